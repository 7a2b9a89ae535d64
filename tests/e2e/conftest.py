"""End-to-end harness of the QUIZ app: a temporary PostgreSQL, a migrated and seeded
database, and gunicorn serving the app on 127.0.0.1, as in deployment.

Fixtures are named ``quiz_*`` because this directory is shared with other
end-to-end tests. Everything started here is stopped by its own PID.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from quiz.testing import PostgresUnavailable, TemporaryPostgres, free_port


def _app_env(database_url, media_root):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "QUIZ_", "DATABASE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="quiz.settings",
        DJANGO_SECRET_KEY="e2e-tests-only",
        DATABASE_URL=database_url,
        QUIZ_MEDIA_ROOT=media_root,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        # A teaching setup: the seed's pepe/5678, whom the browser plays as.
        QUIZ_DEMO_USERS="1",
    )
    return env


@pytest.fixture(scope="session")
def quiz_e2e_database():
    """A temporary server with a database migrated and seeded by the real commands."""
    server = TemporaryPostgres()
    try:
        server.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no temporary PostgreSQL: {exc}")
    media = tempfile.mkdtemp(prefix="quiz-e2e-media-")
    try:
        url = server.create_database("quiz_e2e")
        env = _app_env(url, media)
        for command in (["migrate", "--noinput"], ["seed"]):
            result = subprocess.run([sys.executable, "-m", "django", *command], env=env,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        yield env
    finally:
        server.stop()
        shutil.rmtree(media, ignore_errors=True)


@pytest.fixture(scope="session")
def quiz_server(quiz_e2e_database):
    """gunicorn serving quiz.wsgi:application; yields its base URL."""
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "quiz.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--access-logfile", "-"],
        env=quiz_e2e_database, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        last = "nothing yet"
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"gunicorn exited with {proc.returncode}: {log.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn on {base} not healthy after 30 s: {last}")
            time.sleep(0.1)  # poll interval
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
