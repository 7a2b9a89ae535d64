"""Test harness of the QUIZ app: a real PostgreSQL server, seeded, and user-like helpers.

Django is configured here, and only for tests/app: the environment the settings
read is set while this file is imported (pytest imports it while collecting
tests/app, before any test runs), Django is set up, and the environment is put
back, so tests/unit, tests/lab and their subprocesses never see ours. The database URL starts as a placeholder; the session
fixture ``quiz_postgres`` starts a temporary server (quiz.testing) and points
Django at it before pytest-django creates the test database.
"""

import os
import tempfile

import pytest

TEST_ENVIRONMENT = {
    "DJANGO_SETTINGS_MODULE": "quiz.settings",
    "DJANGO_SECRET_KEY": "tests-only-not-a-secret",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/quiz",  # host and port replaced by quiz_postgres
    "DATABASE_READ_URL": "",  # no standby, unless a test sets one (test_quiz_standby.py)
    "QUIZ_MEDIA_ROOT": os.path.join(tempfile.gettempdir(), "quiz-tests-no-media"),  # each test gets its own: quiz_media
    # Logging in is part of most tests; a fast hasher keeps the suite quick (tests only).
    "QUIZ_PASSWORD_HASHERS": "django.contrib.auth.hashers.MD5PasswordHasher",
    # The tests act as the original's demo users (admin/1234, pepe/5678: quiz.seed, quiz.testing).
    "QUIZ_DEMO_USERS": "1",
    "QUIZ_ADMIN_PASSWORD_HASH": "",
    "QUIZ_HEALTH_DETAIL_FROM": "",
    "QUIZ_MAX_BODY": "",
}
_saved = {key: os.environ.get(key) for key in TEST_ENVIRONMENT}
os.environ.update(TEST_ENVIRONMENT)

import django  # noqa: E402

django.setup()  # pytest-django only sets Django up itself when the settings are known at startup

# Settings are read; give the process its environment back, so tests elsewhere in
# the same run (tests/lab, other e2e tests) and their subprocesses never inherit ours.
for _key, _value in _saved.items():
    if _value is None:
        os.environ.pop(_key, None)
    else:
        os.environ[_key] = _value

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
