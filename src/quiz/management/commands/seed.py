"""``seed``: bring the seed's users and quizzes to what the environment asks (idempotent, lock-safe).

``seed --check`` changes nothing and exits 1 when a load would change
something (listing it), 0 when there is nothing to do, as ``migrate --check``
does: a deployment runs ``seed --check || seed``. A configuration the seed
cannot use (a QUIZ_ADMIN_PASSWORD_HASH that is no hash) exits 2 either way,
so it is never mistaken for "something to do". quiz.seed has the rules.
"""

import sys

from django.core.management.base import BaseCommand, CommandError

from quiz.seed import SeedError, load_seed

BAD_CONFIGURATION = 2


class Command(BaseCommand):
    help = ("Create the seed's users (admin from QUIZ_ADMIN_PASSWORD_HASH; admin/1234 and pepe/5678 only with "
            "QUIZ_DEMO_USERS=1) and the four 'Capital of ...' quizzes if missing; disable the old seed's "
            "known passwords otherwise.")

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true",
                            help="change nothing; exit 1 if the seed would change something, else 0")

    def handle(self, *args, check=False, **options):
        try:
            outcome = load_seed(check=check)
        except SeedError as exc:
            raise CommandError(str(exc), returncode=BAD_CONFIGURATION) from None
        for note in outcome.notes:
            self.stderr.write(f"seed: {note}")
        if not outcome.changes:
            self.stdout.write("seed: no change")
            return
        if check:
            self.stdout.write("seed --check: would have " + ", ".join(outcome.changes))
            sys.exit(1)
        self.stdout.write("seed: " + ", ".join(outcome.changes))
