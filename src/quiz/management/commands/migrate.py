"""``migrate``, made safe to run on every server at the same moment.

Django's own command, run while holding the setup advisory lock (see
quiz.locking): the first server applies the migrations, the others wait and
then find them applied.
"""

from django.core.management.commands.migrate import Command as DjangoMigrate

from quiz.locking import setup_lock


class Command(DjangoMigrate):
    help = DjangoMigrate.help + " Holds a PostgreSQL advisory lock so several servers can run it at once."

    def handle(self, *args, **options):
        with setup_lock():
            return super().handle(*args, **options)
