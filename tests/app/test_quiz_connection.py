"""The persistent database connection: checked when a check can tell something, replaced when the server ended it.

quiz.postgres skips Django's health check (a ``SELECT 1`` before a request
first uses a kept connection) on a connection the server answered a moment ago
and has said nothing on since; a connection the server ended, or one idle for
longer, is checked as before. The requests run in a thread of their own
(quiz.testing.in_thread), outside any test transaction, on this module's own
database.
"""

import time

import psycopg
import pytest
from django.core.management import call_command
from django.db import close_old_connections, connection
from django.db.backends.postgresql.base import DatabaseWrapper as DjangoPostgres
from django.test import Client

import quiz.postgres.base
from quiz.seed import load_seed
from quiz.testing import in_thread


@pytest.fixture(scope="module")
def own_db(quiz_postgres, django_db_blocker):
    name = "quiz_connection"
    quiz_postgres.create_database(name)
    db = {"NAME": name, "HOST": "127.0.0.1", "PORT": str(quiz_postgres.port), "USER": "postgres"}

    def setup():
        call_command("migrate", verbosity=0)
        load_seed()

    with django_db_blocker.unblock():
        in_thread(setup, db)
    return db


@pytest.fixture
def db_access(django_db_blocker):
    with django_db_blocker.unblock():
        yield


def served(client, path):
    """A GET as a server answers it: Django's test client leaves out what its request signals do to connections
    (close_old_connections, which also arms the next health check), so it is done here, before and after."""
    close_old_connections()
    response = client.get(path)
    close_old_connections()
    return response


@pytest.fixture
def checks(monkeypatch):
    """How many times Django's own health check (the SELECT 1) ran."""
    count = []
    real = DjangoPostgres.is_usable

    def counted(self):
        count.append(1)
        return real(self)

    monkeypatch.setattr(DjangoPostgres, "is_usable", counted)
    return count


def test_a_connection_the_server_ended_is_replaced_before_the_next_request(db_access, own_db, quiz_postgres, checks):
    def requests():
        client = Client()
        first = served(client, "/quizzes")
        pid = connection.connection.info.backend_pid
        with psycopg.connect(quiz_postgres.url(own_db["NAME"]), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                time.sleep(0.01)
        second = served(client, "/quizzes")
        return first, second, pid, connection.connection.info.backend_pid

    first, second, old_pid, new_pid = in_thread(requests, own_db)
    assert first.status_code == second.status_code == 200
    assert "Capital of Italy" in second.content.decode()
    assert new_pid != old_pid
    assert checks  # the ended connection was checked, found unusable, and replaced


def test_a_connection_that_answered_a_moment_ago_is_not_asked_again(db_access, own_db, checks, monkeypatch):
    monkeypatch.setattr(quiz.postgres.base, "RECENT", 0.5)

    def requests():
        client = Client()
        statuses = [served(client, "/quizzes").status_code]
        checks.clear()
        statuses += [served(client, "/quizzes/1").status_code, served(client, "/quizzes/1/play").status_code]
        back_to_back = len(checks)
        time.sleep(0.6)  # idle for longer than RECENT: asked again
        statuses.append(served(client, "/quizzes").status_code)
        return statuses, back_to_back, len(checks)

    statuses, back_to_back, after_a_pause = in_thread(requests, own_db)
    assert statuses == [200, 200, 200, 200]
    assert back_to_back == 0
    assert after_a_pause == 1
