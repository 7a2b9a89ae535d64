"""The database fails under the users: a 503 "try again" within seconds, never a hang or a 500.

What a failover looks like from one app server, played on 127.0.0.1: a
database that takes connections and never answers, one that refuses them,
one that freezes with the connection open (its kernel still acknowledging
every packet, like a hung host), a persistent connection left on a server
that became read-only, no writable server at all and then a primary again,
a session shut down by the server mid-request; and, in a network namespace
of its own, a host gone silent under an established connection. Each answer
must come within a few seconds, be a 503 with Retry-After and QUIZ's own
page, leave nothing half-saved (no row, no image file), and the next request
must work again with nothing restarted.

The requests run in a thread of their own, whose database connection is
pointed where the test says (quiz.testing.in_thread); so they commit for
real, into a database of this module (``outage_db``), never into the one the
other tests share.
"""

import threading
import time

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from quiz import unavailable
from quiz.models import Attachment, Quiz
from quiz.seed import load_seed
from quiz.testing import FreezableProxy, SilentServer, free_port, image_upload, in_thread, login_as, user

# A page must be answered within this many seconds when the database is away:
# connect_timeout (2 s) plus some slack for a loaded test machine.
FEW_SECONDS = 4.5


@pytest.fixture(scope="module")
def outage_db(quiz_postgres, django_db_blocker):
    """A migrated, seeded database of this module's own; its settings for in_thread."""
    name = "quiz_outage"
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
    """Database access for the requests' thread, outside any test transaction."""
    with django_db_blocker.unblock():
        yield


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_try_again(response, detail=unavailable.READ):
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    page = response.content.decode()
    assert unavailable.TITLE in page and detail in page
    assert "Traceback" not in page


def test_a_database_that_never_answers_is_a_503_within_seconds(db_access, outage_db):
    with SilentServer() as silent:
        def requests():
            client = Client()
            page, page_time = timed(lambda: client.get("/quizzes"))
            health, health_time = timed(lambda: client.get("/healthz"))
            return page, page_time, health, health_time

        page, page_time, health, health_time = in_thread(requests, {**outage_db, "PORT": str(silent.port)})
    assert_try_again(page)
    assert page_time < FEW_SECONDS
    assert health.status_code == 503 and b"database: OperationalError" in health.content
    assert health_time < FEW_SECONDS


def test_a_refused_connection_is_a_503_at_once_for_pages_json_and_logged_in_users(db_access, outage_db):
    def requests():
        client = Client()
        responses = [client.get("/quizzes"), client.get("/quizzes.json"), client.get("/api/quizzes?token=x")]
        # With a session cookie the failure comes from loading the session, before any view.
        client.cookies["sessionid"] = "a" * 32
        responses.append(client.post("/quizzes", {"question": "Q", "answer": "A"}))
        return responses

    page, json_list, api, with_session = in_thread(requests, {**outage_db, "PORT": str(free_port())})
    assert_try_again(page)
    assert_try_again(with_session, unavailable.WRITE)
    for response in (json_list, api):
        assert response.status_code == 503 and response["Retry-After"] == "5"
        assert response.json() == {"error": "QUIZ is back in a moment: please try again in a few seconds."}


def test_a_frozen_server_with_the_connection_open_is_a_503_within_seconds(db_access, outage_db, settings):
    """A hung host's kernel still acknowledges every packet: only QUIZ_DB_WAIT_LIMIT ends the wait."""
    settings.QUIZ_DB_WAIT_LIMIT = 1
    with FreezableProxy(int(outage_db["PORT"])) as proxy:
        def requests():
            client = Client()
            before = client.get("/quizzes")           # the thread's connection, kept open, goes through the proxy
            proxy.freeze()
            during, took = timed(lambda: client.get("/quizzes"))
            health, health_took = timed(lambda: client.get("/healthz"))
            return before, during, took, health, health_took

        before, during, took, health, health_took = in_thread(requests, {**outage_db, "PORT": str(proxy.port)})
    assert before.status_code == 200
    assert_try_again(during)
    assert took < 1 + FEW_SECONDS   # the cut connection's check, then a new connection that times out
    assert health.status_code == 503 and health_took < FEW_SECONDS


SILENT_HOST = """
import subprocess, time
import psycopg
from quiz.dburl import BOUNDED_WAITS
from quiz.testing import TemporaryPostgres

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with TemporaryPostgres() as pg:
    conn = psycopg.connect(pg.url(), autocommit=True, **BOUNDED_WAITS)
    conn.execute("SELECT 1")
    # From now on the server's packets are dropped both ways: no TCP answer at all.
    subprocess.run(["nft", "add table inet cut; add chain inet cut out { type filter hook output priority 0; }; "
                    f"add rule inet cut out tcp sport {pg.port} drop; add rule inet cut out tcp dport {pg.port} drop"],
                   check=True)
    started = time.monotonic()
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        print(round(time.monotonic() - started, 2), str(exc).splitlines()[0])
"""


def test_a_query_to_a_host_gone_silent_fails_in_about_3_s(quiz_postgres):
    """tcp_user_timeout at work: played in a network namespace of its own, whose loopback drops everything."""
    import shutil
    import subprocess
    import sys

    if not (shutil.which("unshare") and shutil.which("nft") and shutil.which("ip")):
        pytest.skip("needs unshare, nft and ip")
    result = subprocess.run(["unshare", "--net", sys.executable, "-c", SILENT_HOST],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout, "the query on the silent host was answered"
    took, message = result.stdout.split(" ", 1)
    assert 2.5 < float(took) < 4.5, result.stdout
    assert "timed out" in message


def test_only_a_request_has_its_waits_cut(db_access, outage_db):
    """migrate may wait for minutes on another server's lock: code outside requests waits as long as it takes."""
    from quiz import deadline

    with FreezableProxy(int(outage_db["PORT"])) as proxy:
        def select_one():
            started = time.monotonic()
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            except Exception as exc:
                return exc, time.monotonic() - started
            return None, time.monotonic() - started

        def queries_on_a_frozen_server():
            connection.ensure_connection()
            proxy.freeze()
            thaw = threading.Timer(1.5, proxy.thaw)
            thaw.start()
            outside = select_one()          # not in a request: waits for the thaw
            thaw.join()
            proxy.freeze()
            deadline.begin_request(0.5)
            try:
                inside = select_one()       # in a request: cut after 0.5 s
            finally:
                deadline.end_request()
            return outside, inside

        outside, inside = in_thread(queries_on_a_frozen_server, {**outage_db, "PORT": str(proxy.port)})
    assert outside[0] is None and outside[1] > 1.4
    error, took = inside
    assert isinstance(error.__cause__, deadline.NoAnswer) and 0.4 < took < 2


def test_a_write_on_a_server_turned_read_only_is_a_503_and_the_next_one_is_saved(db_access, outage_db, quiz_media):
    """A persistent connection to a demoted primary passes the health check but refuses every write."""
    def demoted():
        with connection.cursor() as cursor:  # the server under this connection is now a standby
            cursor.execute("SET default_transaction_read_only = on")

    def drill():
        client = Client()
        login_as(client, "pepe")
        pepe = user("pepe")
        demoted()
        refused = client.post("/quizzes", {"question": "Saved in a failover?", "answer": "no",
                                           "image": image_upload()})
        thrown_away = connection.connection is None
        demoted()
        photo_refused = client.post(f"/users/{pepe.id}", {"_method": "PUT", "image": image_upload()})
        left_behind = (Quiz.objects.filter(question="Saved in a failover?").count(), user("pepe").photo_id,
                       sorted(p.name for p in quiz_media.iterdir()))
        saved = client.post("/quizzes", {"question": "Saved after the failover?", "answer": "yes",
                                         "image": image_upload()})
        quiz = Quiz.objects.get(question="Saved after the failover?")
        stored = Attachment.objects.get(pk=quiz.attachment_id).name
        return refused, thrown_away, photo_refused, left_behind, saved, quiz.id, stored

    refused, thrown_away, photo_refused, left_behind, saved, quiz_id, stored = in_thread(drill, outage_db)
    assert_try_again(refused, unavailable.WRITE)
    assert thrown_away
    assert_try_again(photo_refused, unavailable.WRITE)
    assert left_behind == (0, None, [])  # no row, and each image stored before the refused write is gone
    assert saved.status_code == 302 and saved["Location"] == f"/quizzes/{quiz_id}"
    assert [p.name for p in quiz_media.iterdir()] == [stored]


def test_no_writable_server_then_a_new_primary_is_found_without_a_restart(db_access, outage_db, quiz_postgres):
    """target_session_attrs=read-write: while every server is read-only there is no connection at all."""
    admin = quiz_postgres.url("postgres")
    options = {"target_session_attrs": "read-write"}

    def alter(value):
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {outage_db['NAME']} {value}")

    def drill():
        client = Client()
        alter("SET default_transaction_read_only = on")
        try:
            during = client.get("/quizzes")
        finally:
            alter("RESET default_transaction_read_only")
        after = client.get("/quizzes")
        return during, after

    settings_dict = {**outage_db, "OPTIONS": {**connection.settings_dict["OPTIONS"], **options}}
    during, after = in_thread(drill, settings_dict)
    assert_try_again(during)
    assert after.status_code == 200


def test_a_list_of_hosts_skips_the_one_that_does_not_answer(db_access, outage_db):
    with SilentServer() as silent:
        def first_page():
            return timed(lambda: Client().get("/quizzes"))

        ports = f"{silent.port},{outage_db['PORT']}"
        options = {**connection.settings_dict["OPTIONS"], "target_session_attrs": "read-write"}
        response, took = in_thread(first_page, {**outage_db, "HOST": "127.0.0.1,127.0.0.1", "PORT": ports,
                                                 "OPTIONS": options})
    assert response.status_code == 200 and took < FEW_SECONDS


def test_a_session_shut_down_by_the_server_mid_request_is_a_503_and_then_all_is_well(
        db_access, outage_db, monkeypatch):
    import quiz.views.quizzes

    real_list = quiz.views.quizzes.QuizList

    def shut_down_then_list(*args, **kwargs):
        with connection.cursor() as cursor:  # the server ends this session, as on a restart or a demotion
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return real_list(*args, **kwargs)

    def requests():
        client = Client()
        monkeypatch.setattr(quiz.views.quizzes, "QuizList", shut_down_then_list)
        during = client.get("/quizzes")
        monkeypatch.setattr(quiz.views.quizzes, "QuizList", real_list)
        return during, client.get("/quizzes")

    during, after = in_thread(requests, outage_db)
    assert_try_again(during)
    assert after.status_code == 200


@pytest.mark.parametrize("make", [
    lambda: psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
    lambda: psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    lambda: psycopg.errors.CannotConnectNow("the database system is shutting down"),
    lambda: psycopg.errors.ConnectionTimeout("connection timeout expired"),
    lambda: psycopg.OperationalError("server closed the connection unexpectedly"),
])
def test_what_counts_as_the_database_being_away(make):
    from django.db import InternalError, OperationalError

    from quiz.outage import database_unavailable

    cause = make()
    wrapped = (InternalError if isinstance(cause, psycopg.InternalError) else OperationalError)(*cause.args)
    wrapped.__cause__ = cause
    assert database_unavailable(cause) and database_unavailable(wrapped)


@pytest.mark.parametrize("make", [
    lambda: psycopg.errors.UniqueViolation("duplicate key"),
    lambda: psycopg.errors.InFailedSqlTransaction("current transaction is aborted"),
    lambda: psycopg.errors.UndefinedTable("relation does not exist"),
    lambda: ValueError("not the database"),
])
def test_bugs_and_bad_data_are_not_an_outage(make):
    from django.db import DatabaseError

    from quiz.outage import database_unavailable

    cause = make()
    wrapped = DatabaseError(*cause.args)
    wrapped.__cause__ = cause
    assert not database_unavailable(cause) and not database_unavailable(wrapped)


@pytest.mark.django_db
def test_a_session_that_cannot_be_saved_after_the_view_is_a_503_too(monkeypatch):
    """The one failure outside the middleware's reach: the view is done, its write may be saved."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import OperationalError

    def refused(self, must_create=False):
        error = OperationalError("terminating connection due to administrator command")
        error.__cause__ = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
        raise error

    client = Client(raise_request_exception=False)
    login_as(client, "pepe")
    monkeypatch.setattr(SessionStore, "save", refused)
    a_minute_later = time.time() + 60  # the session's last-seen time changes, so it is saved after the view
    monkeypatch.setattr(time, "time", lambda: a_minute_later)
    assert_try_again(client.get("/quizzes"))
