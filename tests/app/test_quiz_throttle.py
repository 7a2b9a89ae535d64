"""Failed logins back off per account, on every server at once, and a refused attempt checks no password.

Two test clients stand for two servers behind the balancer: they share
nothing but the database, as the servers do.
"""

import threading

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.db import connection
from django.test import Client

import quiz.views.session
from quiz import throttle
from quiz.models import LoginThrottle
from quiz.testing import committed_database, in_thread, make_user

WRONG = "not the password"


def attempt(client, login, password):
    return client.post("/session", {"login": login, "password": password, "redir": "/quizzes", "commit": "Login"})


def logged_in(client):
    return client.get("/quizzes/new").status_code == 200


def fail(client, login, times):
    return [attempt(client, login, WRONG) for _ in range(times)]


def unblock(login):
    """The block is over (as if its seconds had passed), the count kept."""
    LoginThrottle.objects.filter(username=login.lower()).update(blocked_until=None)


@pytest.fixture
def hashing(monkeypatch):
    """Counts every use of the password hasher (the tests' MD5) and of authenticate."""
    calls = {"hasher": 0, "authenticate": 0}

    def counted(kind, real):
        def call(*args, **kwargs):
            calls[kind] += 1
            return real(*args, **kwargs)
        return call

    for method in ("encode", "verify"):
        monkeypatch.setattr(MD5PasswordHasher, method, counted("hasher", getattr(MD5PasswordHasher, method)))
    monkeypatch.setattr(quiz.views.session, "authenticate", counted("authenticate", quiz.views.session.authenticate))
    return calls


@pytest.mark.django_db
def test_five_failures_are_free_and_the_sixth_on_is_429_with_retry_after(client):
    for response in fail(client, "pepe", 5):
        assert response.status_code == 200 and "Authentication has failed" in response.content.decode()
    sixth, seventh = fail(client, "pepe", 2)
    for response in (sixth, seventh):
        page = response.content.decode()
        assert response.status_code == 429
        assert "Too many failed logins for this account. Wait" in page and 'value="pepe"' in page
        assert 'value="/quizzes"' in page  # the form again, where it was going
    assert sixth["Retry-After"] == "2"  # 2^(6-5) seconds
    assert seventh["Retry-After"] in ("1", "2")  # refused while blocked: the same block, a moment later
    assert LoginThrottle.objects.get(username="pepe").failures == 6  # the refused one was not counted


@pytest.mark.django_db
def test_while_blocked_no_password_is_checked(client, hashing):
    fail(client, "pepe", 6)
    hashing.update(hasher=0, authenticate=0)
    for login, password in (("pepe", WRONG), ("pepe", "5678"), ("PePe", "5678")):
        assert attempt(client, login, password).status_code == 429
    assert hashing == {"hasher": 0, "authenticate": 0}
    unblock("pepe")
    attempt(client, "pepe", WRONG)
    assert hashing["authenticate"] == 1 and hashing["hasher"] >= 1  # the proof that the counting counts


@pytest.mark.django_db
def test_the_right_password_during_a_block_is_refused_too_and_works_after_it(client):
    fail(client, "pepe", 6)
    refused = attempt(client, "pepe", "5678")
    assert refused.status_code == 429 and not logged_in(client)
    unblock("pepe")
    accepted = attempt(client, "pepe", "5678")
    assert accepted.status_code == 302 and accepted["Location"] == "/quizzes" and logged_in(client)
    assert not LoginThrottle.objects.filter(username="pepe").exists()  # the count starts again
    other = Client()
    assert [response.status_code for response in fail(other, "pepe", 6)] == [200] * 5 + [429]


@pytest.mark.django_db
def test_two_servers_share_the_count():
    first, second = Client(), Client()
    assert [r.status_code for r in fail(first, "admin", 3)] == [200] * 3
    assert [r.status_code for r in fail(second, "Admin", 3)] == [200, 200, 429]  # the name, whatever its case
    assert attempt(first, "admin", "1234").status_code == 429


@pytest.mark.django_db
def test_each_failure_past_the_free_ones_doubles_the_block_up_to_five_minutes(client):
    fail(client, "pepe", 6)
    waits = []
    for _ in range(12):
        unblock("pepe")
        waits.append(int(attempt(client, "pepe", WRONG)["Retry-After"]))
    assert waits == [4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300, 300]
    LoginThrottle.objects.filter(username="pepe").update(failures=2_000_000, blocked_until=None)
    assert attempt(client, "pepe", WRONG)["Retry-After"] == "300"  # a long count does not overflow


@pytest.mark.django_db
def test_a_name_that_is_no_account_is_answered_like_one(client, hashing):
    answers = fail(client, "nobody-here", 7)
    assert [response.status_code for response in answers] == [200] * 5 + [429, 429]
    assert hashing["authenticate"] == 6  # the seventh was refused unchecked


@pytest.mark.django_db
def test_a_login_with_nothing_to_check_is_not_counted(client):
    for form in ({"login": "pepe", "password": ""}, {"login": "", "password": "x"},
                 {"login": "pe\x00pe", "password": "x"}):
        for _ in range(7):
            assert client.post("/session", form).status_code == 200
    assert not LoginThrottle.objects.exists()


@pytest.mark.django_db
def test_a_success_forgets_earlier_failures(client):
    fail(client, "pepe", 4)
    assert attempt(client, "pepe", "5678").status_code == 302
    assert [r.status_code for r in fail(Client(), "pepe", 5)] == [200] * 5


@pytest.mark.django_db
def test_a_count_that_cannot_be_written_never_fails_the_login(client, monkeypatch, caplog):
    make_user("ana")
    fail(client, "ana", 2)
    monkeypatch.setattr(throttle, "FORGET_SQL", "DELETE FROM quiz_no_such_table")
    monkeypatch.setattr(throttle, "FAILED_SQL", "INSERT INTO quiz_no_such_table VALUES (%s)")
    failed = attempt(client, "ana", WRONG)
    assert failed.status_code == 200 and "Authentication has failed" in failed.content.decode()
    accepted = attempt(client, "ana", "ana-pass")
    assert accepted.status_code == 302 and logged_in(client)
    assert "could not record a failed login" in caplog.text and "could not reset a failed-login count" in caplog.text


@pytest.mark.django_db
def test_old_counts_are_purged(monkeypatch):
    LoginThrottle.objects.create(username="long-ago", failures=3, last_failure="2020-01-01T00:00:00Z")
    monkeypatch.setattr(throttle, "PURGE_EVERY", 1)  # this failure purges
    throttle.failed("recent")
    assert list(LoginThrottle.objects.values_list("username", flat=True)) == ["recent"]


# -- many servers at the same moment: every failure counts ---------------------------------------


@pytest.fixture(scope="module")
def throttle_db(quiz_postgres, django_db_blocker):
    """A migrated, seeded database of this module's own (writes here are committed); its settings for in_thread."""
    return committed_database(quiz_postgres, django_db_blocker, "quiz_throttle")


def test_concurrent_failures_on_many_servers_all_count(throttle_db, django_db_blocker):
    servers = 8
    start = threading.Barrier(servers)
    waits = [None] * servers

    def server(index):
        def record():
            connection.ensure_connection()
            start.wait(10)
            return throttle.failed("admin")
        waits[index] = in_thread(record, throttle_db)

    with django_db_blocker.unblock():
        threads = [threading.Thread(target=server, args=(i,)) for i in range(servers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        failures = in_thread(lambda: LoginThrottle.objects.get(username="admin").failures, throttle_db)
    assert failures == servers
    assert sorted(waits) == [0] * 5 + [2, 4, 8]  # each count was seen once, in some order
