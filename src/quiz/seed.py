"""The seed data of QUIZ, and the idempotent function that loads it on every deployment.

The original seeded two users with well-known passwords (admin/1234 as
administrator, pepe/5678), and four "Capital of …" quizzes with no author.
Anyone who has read the seed could take over a deployment made that way, so
the users now depend on the environment (settings.py):

- ``QUIZ_ADMIN_PASSWORD_HASH``: a Django password hash made by the
  deployment; the administrator ``admin`` is created with it (the server never
  sees the password). An existing admin still on the seed's 1234, or with no
  usable password, gets it too (a deployment upgraded from the old seed); an
  admin with any other password was changed on purpose and is left alone.
- ``QUIZ_DEMO_USERS`` on: the original's demo users, admin/1234 (unless a hash
  is given: the deployment's choice wins) and pepe/5678, for teaching setups.
- ``QUIZ_DEMO_USERS`` off: pepe is not created, and an existing pepe still on
  5678 gets an unusable password. Without a hash either, no admin is created
  (``notes`` says so) and an existing admin still on 1234 is disabled too.

The quizzes are not secret and are always there. Loading reads what is there
and changes only what the rules above ask for, so it can run on every start;
``check=True`` says what it would change without changing anything.
"""

import os
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.hashers import check_password, identify_hasher, is_password_usable, make_password
from django.db import transaction

from quiz.locking import setup_lock
from quiz.models import Quiz, User

ADMIN = "admin"
DEMO_PASSWORDS = {"admin": "1234", "pepe": "5678"}  # the original's, public since it was published
QUIZZES = [
    ("Capital of Italy", "Rome"),
    ("Capital of Portugal", "Lisbon"),
    ("Capital of Spain", "Madrid"),
    ("Capital of France", "Paris"),
]


class SeedError(ValueError):
    """The seed's configuration cannot be used (the message says which variable and why)."""


@dataclass
class Outcome:
    """What a load changed (or, checking, would change), and what the operator should know."""

    changes: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def checked_hash(encoded):
    """``encoded`` if it is a password hash this server can check; SeedError otherwise.

    A password put in the variable by mistake must not become a password
    nobody can use (or worse, be mistaken for one): it is refused instead.
    """
    if not encoded:
        return ""
    try:
        identify_hasher(encoded).decode(encoded)  # decode: all of it is there, not just a known prefix
    except NotImplementedError:
        pass  # a hasher that cannot take its hashes apart: its prefix is all that can be checked
    except (ValueError, TypeError):
        raise SeedError("QUIZ_ADMIN_PASSWORD_HASH is not a password hash of a hasher in PASSWORD_HASHERS "
                        "(expected e.g. pbkdf2_sha256$<iterations>$<salt>$<hash>)") from None
    return encoded


def _still_demo(user):
    """Whether ``user`` still logs in with the seed's well-known password (no hash upgrade is saved)."""
    return check_password(DEMO_PASSWORDS[user.username], user.password)


def _with_hash(user, admin_hash):
    def apply():
        user.password = admin_hash
        user.save(update_fields=["password"])
    return apply


def _disabled(user):
    def apply():
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return apply


def _created(username, password=None, encoded=None, is_admin=False):
    """A new user with ``password`` hashed here, or with the hash ``encoded`` as given."""
    def apply():
        user = User(username=username, is_admin=is_admin)
        if encoded:
            user.password = encoded
        else:
            user.set_password(password)
        user.save()
    return apply


def _quiz_created(question, answer):
    def apply():
        Quiz.objects.create(question=question, answer=answer)
    return apply


def _admin_plan(admin, demo, admin_hash, plan, outcome):
    if admin is None:
        if admin_hash:
            plan.append(("created user admin (password from QUIZ_ADMIN_PASSWORD_HASH)",
                         _created(ADMIN, encoded=admin_hash, is_admin=True)))
        elif demo:
            plan.append(("created user admin (demo password)", _created(ADMIN, DEMO_PASSWORDS[ADMIN], is_admin=True)))
        else:
            outcome.notes.append("no administrator created: set QUIZ_ADMIN_PASSWORD_HASH "
                                 "(or QUIZ_DEMO_USERS=1 for the demo's admin/1234)")
        return
    if not admin.is_admin:
        # Someone took the name (open registration) while there was no admin: not ours to promote.
        outcome.notes.append("user admin exists but is no administrator: left alone")
        return
    if admin_hash:
        # Unusable: disabled by an earlier load without a hash, or never given one.
        replaceable = not is_password_usable(admin.password) or _still_demo(admin)
        if admin.password != admin_hash and replaceable:
            plan.append(("set admin's password from QUIZ_ADMIN_PASSWORD_HASH", _with_hash(admin, admin_hash)))
    elif not demo and _still_demo(admin):
        plan.append(("disabled admin's seed password", _disabled(admin)))


def _pepe_plan(pepe, demo, plan):
    if pepe is None:
        if demo:
            plan.append(("created user pepe (demo password)", _created("pepe", DEMO_PASSWORDS["pepe"])))
    elif not demo and _still_demo(pepe):
        plan.append(("disabled pepe's seed password", _disabled(pepe)))


def _quiz_plan(plan):
    for question, answer in QUIZZES:
        if not Quiz.objects.filter(question=question, author=None).exists():
            plan.append((f"created quiz {question!r}", _quiz_created(question, answer)))


def _hash_of_plain_password():
    """For the exports, where only the seed's step sees the administrator's password
    (QUIZ_ADMIN_PASSWORD, a Compose or Kubernetes secret): hashed here, kept nowhere."""
    password = os.environ.get("QUIZ_ADMIN_PASSWORD", "")
    return make_password(password) if password else ""


def load_seed(demo=None, admin_hash=None, check=False):
    """Bring the seed's users and quizzes to what the configuration asks; return an Outcome.

    ``demo`` and ``admin_hash`` default to settings.QUIZ_DEMO_USERS and
    settings.QUIZ_ADMIN_PASSWORD_HASH. With ``check`` nothing is changed: the
    Outcome lists what a load would change. SeedError for a bad hash.
    """
    demo = settings.QUIZ_DEMO_USERS if demo is None else demo
    if admin_hash is None:
        admin_hash = settings.QUIZ_ADMIN_PASSWORD_HASH or _hash_of_plain_password()
    admin_hash = checked_hash(admin_hash)
    outcome = Outcome()
    # Every server runs this at once at boot: the lock makes the others find the work done.
    with setup_lock(), transaction.atomic():
        users = {user.username: user for user in User.objects.filter(username__in=DEMO_PASSWORDS)}
        plan = []
        _admin_plan(users.get(ADMIN), demo, admin_hash, plan, outcome)
        _pepe_plan(users.get("pepe"), demo, plan)
        _quiz_plan(plan)
        for change, apply in plan:
            if not check:
                apply()
            outcome.changes.append(change)
    return outcome
