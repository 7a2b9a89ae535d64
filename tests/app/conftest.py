"""Test harness of the QUIZ app: a real PostgreSQL server, seeded, and user-like helpers.

Django is configured here, and only for tests/app: the settings module and the
environment it reads are set when this file is imported (pytest imports it
while collecting tests/app, before any test runs), so tests/unit and tests/lab
never see Django. The database URL starts as a placeholder; the session
fixture ``quiz_postgres`` starts a temporary server (quiz.testing) and points
Django at it before pytest-django creates the test database.
"""

import os
import tempfile

import pytest

os.environ["DJANGO_SETTINGS_MODULE"] = "quiz.settings"
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-a-secret")
os.environ["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/quiz"  # replaced by quiz_postgres
os.environ["QUIZ_MEDIA_ROOT"] = tempfile.mkdtemp(prefix="quiz-media-")
# Logging in is part of most tests; a fast hasher keeps the suite quick (tests only).
os.environ["QUIZ_PASSWORD_HASHERS"] = "django.contrib.auth.hashers.MD5PasswordHasher"

import django  # noqa: E402

django.setup()  # pytest-django only sets Django up itself when the settings are known at startup

from quiz.testing import PostgresUnavailable, TemporaryPostgres  # noqa: E402


@pytest.fixture(scope="session")
def quiz_postgres():
    """One temporary PostgreSQL server for the whole tests/app session."""
    server = TemporaryPostgres()
    try:
        server.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no temporary PostgreSQL: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(quiz_postgres):
    from django.conf import settings

    settings.DATABASES["default"].update(HOST="127.0.0.1", PORT=str(quiz_postgres.port), USER="postgres")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database, migrated by pytest-django, plus the seed data every test starts from."""
    from quiz.seed import load_seed

    with django_db_blocker.unblock():
        load_seed()


@pytest.fixture(autouse=True)
def quiz_media(settings, tmp_path):
    """Each test gets an empty media root of its own."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = str(root)
    return root
