"""``seed``: load the original's users and quizzes if they are missing (idempotent, lock-safe)."""

from django.core.management.base import BaseCommand

from quiz.seed import load_seed


class Command(BaseCommand):
    help = "Create the seed users (admin/1234, pepe/5678) and the four 'Capital of ...' quizzes, if missing."

    def handle(self, *args, **options):
        created = load_seed()
        if created:
            self.stdout.write("seed: created " + ", ".join(created))
        else:
            self.stdout.write("seed: no change")
