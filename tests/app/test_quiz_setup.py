"""Starting many servers at once: migrate and seed from several processes against one fresh database.

These run the real management commands in subprocesses, the way every
application server runs them at boot, against databases of their own on the
session's temporary PostgreSQL server.
"""

import os
import subprocess
import sys

import psycopg
import pytest


def command_env(database_url, **extra):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "QUIZ_", "DATABASE_"))}
    env.update(DJANGO_SETTINGS_MODULE="quiz.settings", DJANGO_SECRET_KEY="tests-only", DATABASE_URL=database_url, **extra)
    return env


def start(argv, env):
    return subprocess.Popen([sys.executable, "-m", "django", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_three_servers_migrate_and_seed_at_once(quiz_postgres):
    url = quiz_postgres.create_database("quiz_concurrent")
    env = command_env(url, QUIZ_DEMO_USERS="1")
    script = "import django, sys; from django.core.management import call_command; django.setup(); " \
             "call_command('migrate', '--noinput', verbosity=0); call_command('seed')"
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        outputs.append(out)
        assert proc.returncode == 0, out
    assert sum("seed: created user admin" in out for out in outputs) == 1
    assert sum("seed: no change" in out for out in outputs) == 2
    with psycopg.connect(url) as conn:
        users = conn.execute("SELECT username, is_admin FROM quiz_user ORDER BY username").fetchall()
        quizzes = conn.execute("SELECT question, answer, author_id FROM quiz_quiz ORDER BY id").fetchall()
    assert users == [("admin", True), ("pepe", False)]
    assert quizzes == [("Capital of Italy", "Rome", None), ("Capital of Portugal", "Lisbon", None),
                       ("Capital of Spain", "Madrid", None), ("Capital of France", "Paris", None)]


def test_django_admin_commands_run_and_seed_is_idempotent(quiz_postgres):
    url = quiz_postgres.create_database("quiz_commands")
    env = command_env(url, QUIZ_DEMO_USERS="1")
    for argv, expected in ((["migrate", "--noinput"], "Applying quiz.0001_initial"),
                           (["migrate", "--noinput"], "No migrations to apply"),
                           (["seed"], "seed: created user admin (demo password), created user pepe (demo password)"),
                           (["seed"], "seed: no change")):
        proc = start(argv, env)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and expected in out, out


def test_quizstack_app_runs_the_same_commands(quiz_postgres):
    url = quiz_postgres.create_database("quiz_cli")
    env = command_env(url)
    for action, expected in (("migrate", "Applying quiz.0001_initial"), ("seed", "seed: created")):
        proc = subprocess.run([sys.executable, "-m", "quizstack.cli", "app", action], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and expected in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("missing, message", [
    ("DATABASE_URL", "DATABASE_URL is not set"),
    ("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY is not set"),
])
def test_the_server_refuses_to_start_without_its_configuration(missing, message):
    env = command_env("postgresql://postgres@127.0.0.1:1/quiz")
    del env[missing]
    proc = subprocess.run([sys.executable, "-c", "import quiz.wsgi"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "ImproperlyConfigured" in proc.stderr and message in proc.stderr


def test_the_served_application_has_the_short_way_for_anonymous_reads():
    """What gunicorn loads is quiz.anonymous.Application, both ways ready (tests/app/test_anonymous_reads.py),
    inside the bound on request bodies (quiz.bodylimit, tests/app/test_quiz_bodylimit.py)."""
    env = command_env("postgresql://postgres@127.0.0.1:1/quiz", QUIZ_MAX_BODY="1000")
    code = ("import quiz.wsgi as w; b = w.application; a = b.app; "
            "print(type(b).__name__, b.limit, type(a).__module__, type(a).__name__, type(a.full).__name__, "
            "a.short.middleware[-1])")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["BodyLimit", "1000", "quiz.anonymous", "Application", "WSGIHandler",
                                   "django.middleware.clickjacking.XFrameOptionsMiddleware"]


def test_sqlite_is_refused():
    env = command_env("sqlite:///tmp/quiz.db")
    proc = subprocess.run([sys.executable, "-c", "import quiz.wsgi"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "must start with postgres://" in proc.stderr


def test_syslog_and_hosts_come_from_the_environment():
    env = command_env("postgresql://postgres@127.0.0.1:1/quiz", QUIZ_SYSLOG="10.2.4.40:514",
                      DJANGO_ALLOWED_HOSTS="10.2.1.2, quiz.example")
    code = ("import django; django.setup(); from django.conf import settings as s; import logging; "
            "h = [x for x in logging.getLogger().handlers if type(x).__name__ == 'SysLogHandler'][0]; "
            "print(h.address, int(h.socktype), s.ALLOWED_HOSTS, s.DATABASES['default']['CONN_MAX_AGE'] > 0)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "('10.2.4.40', 514) 2 ['10.2.1.2', 'quiz.example'] True"


def test_the_safety_settings_come_from_the_environment():
    env = command_env("postgresql://postgres@127.0.0.1:1/quiz", QUIZ_HEALTH_DETAIL_FROM="10.2.3.1, 10.2.3.0/24",
                      QUIZ_MAX_BODY="5000", QUIZ_DEMO_USERS="yes", QUIZ_ADMIN_PASSWORD_HASH=" md5$s$h ")
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.QUIZ_HEALTH_DETAIL_FROM, s.QUIZ_MAX_BODY, s.DATA_UPLOAD_MAX_MEMORY_SIZE, "
            "s.FILE_UPLOAD_MAX_MEMORY_SIZE, s.QUIZ_DEMO_USERS, repr(s.QUIZ_ADMIN_PASSWORD_HASH))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['10.2.3.1', '10.2.3.0/24'] 5000 5000 5000 True 'md5$s$h'"
    unset = subprocess.run([sys.executable, "-c", code], env=command_env("postgresql://postgres@127.0.0.1:1/quiz"),
                           capture_output=True, text=True, timeout=60)
    assert unset.stdout.strip() == f"None {2 * 1024 * 1024 + 512 * 1024} {2621440} {2621440} False ''", unset.stderr


@pytest.mark.parametrize("variable, value, message", [
    ("QUIZ_HEALTH_DETAIL_FROM", "10.2.3.1,lb1", "QUIZ_HEALTH_DETAIL_FROM: 'lb1' is not an IP address or network"),
    ("QUIZ_MAX_BODY", "2M", "QUIZ_MAX_BODY must be a positive whole number, not '2M'"),
    ("QUIZ_MAX_BODY", "0", "QUIZ_MAX_BODY must be a positive whole number, not '0'"),
])
def test_a_malformed_safety_setting_stops_the_server(variable, value, message):
    env = command_env("postgresql://postgres@127.0.0.1:1/quiz", **{variable: value})
    proc = subprocess.run([sys.executable, "-c", "import quiz.wsgi"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "ImproperlyConfigured" in proc.stderr and message in proc.stderr
