"""The seed data of the original QUIZ, and the idempotent function that loads it.

Two users (admin/1234 as administrator, pepe/5678) and four "Capital of …"
quizzes with no author. Loading reads what is there and adds only what is
missing, so it can run on every start; passwords of existing users are left
alone (someone may have changed them on purpose).
"""

from django.db import transaction

from quiz.locking import setup_lock
from quiz.models import Quiz, User

USERS = [("admin", "1234", True), ("pepe", "5678", False)]
QUIZZES = [
    ("Capital of Italy", "Rome"),
    ("Capital of Portugal", "Lisbon"),
    ("Capital of Spain", "Madrid"),
    ("Capital of France", "Paris"),
]


def load_seed():
    """Create what is missing; return the list of things created (empty: no change)."""
    created = []
    with setup_lock(), transaction.atomic():
        for username, password, is_admin in USERS:
            if not User.objects.filter(username=username).exists():
                User.objects.create_user(username, password, is_admin=is_admin)
                created.append(f"user {username}")
        for question, answer in QUIZZES:
            if not Quiz.objects.filter(question=question, author=None).exists():
                Quiz.objects.create(question=question, answer=answer)
                created.append(f"quiz {question!r}")
    return created
