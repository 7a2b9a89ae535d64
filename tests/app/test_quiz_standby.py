"""While there is no primary, reads come from the standby: a switchover costs no failed read.

Played on 127.0.0.1 with one PostgreSQL: the module's own database
(``failover_db``) is the primary, and the same database reached as the role
``standby``, made read-only with ``ALTER ROLE ... SET
default_transaction_read_only = on``, is the standby (synchronous: it holds
every commit at once). ``DATABASE_READ_URL`` points at that role
(``read_url``). The primary goes away as the local router makes it go:
nothing listens on its port (refused), or what answers there is read-only
(no member takes writes, target_session_attrs=read-write turns it down); it
comes back on its own port. The requests run in a thread of their own
(quiz.testing.in_thread), so what they write is committed for real.
"""

import subprocess
import sys
import time

import psycopg
import pytest
from django.contrib.sessions.models import Session
from django.db import connection, connections
from django.test import Client

from quiz import unavailable
from quiz.dburl import READ_ALIAS, read_database
from quiz.models import Quiz
from quiz.seed import load_seed
from quiz.testing import free_port, in_thread, login_as, user, wsgi_call

# A GET must be answered within this: the balancer gives a GET 2 s before it asks another server.
BALANCER_WAIT = 2.0
# A 503 within a few seconds, as in test_quiz_outage.py.
FEW_SECONDS = 4.5


@pytest.fixture(scope="module")
def failover_db(quiz_postgres, django_db_blocker):
    """A migrated, seeded database of this module's own; its settings for in_thread."""
    from django.core.management import call_command

    name = "quiz_failover"
    quiz_postgres.create_database(name)
    with psycopg.connect(quiz_postgres.url("postgres"), autocommit=True) as admin:
        admin.execute("CREATE ROLE standby LOGIN SUPERUSER")
        admin.execute(f"ALTER ROLE standby IN DATABASE {name} SET default_transaction_read_only = on")
    # As deployed: the primary's URL asks for a server that takes writes.
    options = {**connection.settings_dict["OPTIONS"], "target_session_attrs": "read-write"}
    db = {"NAME": name, "HOST": "127.0.0.1", "PORT": str(quiz_postgres.port), "USER": "postgres", "OPTIONS": options}

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


def set_read_url(url):
    """DATABASE_READ_URL, as settings.py would have read it at start; returns how to unset it."""
    databases = connections.settings
    databases[READ_ALIAS] = read_database(url)
    connections.configure_settings(databases)  # Django's defaults for the new alias
    return lambda: databases.pop(READ_ALIAS)


@pytest.fixture
def read_url(failover_db):
    """DATABASE_READ_URL is the standby: the module's database as the read-only role."""
    unset = set_read_url(f"postgresql://standby@127.0.0.1:{failover_db['PORT']}/{failover_db['NAME']}")
    yield
    unset()


def primary_away(how="refused"):
    """The primary goes away under this thread's server, as the router shows it."""
    primary = connections["default"]
    primary.close()  # a switchover ends the old primary's sessions
    if how == "refused":
        primary.settings_dict["PORT"] = str(free_port())  # nothing listens there
    else:  # what answers is read-only, and target_session_attrs=read-write turns it down
        primary.settings_dict["USER"] = "standby"


def primary_back(db):
    primary = connections["default"]
    primary.close()
    primary.settings_dict.update(PORT=db["PORT"], USER=db["USER"])


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def from_standby(response):
    return response.status_code == 200 and response.get("X-Quiz-Read-From") == "standby"


def assert_try_again(response, detail=unavailable.READ):
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert detail in response.content.decode()
    assert "X-Quiz-Read-From" not in response


def last_seen(client):
    """The idle-logout time in the user's session, as the primary holds it."""
    return Session.objects.get(pk=client.cookies["sessionid"].value).get_decoded().get("last_seen")


@pytest.mark.parametrize("how", ["refused", "read-only"])
def test_anonymous_reads_come_from_the_standby_while_there_is_no_primary(db_access, failover_db, read_url, how):
    pages = ["/quizzes", "/quizzes/1", "/quizzes/1/play", "/quizzes/1/check?answer=rome", "/quizzes.json",
             "/quizzes/randomplay"]

    def drill():
        client = Client()
        primary_away(how)
        during = {path: timed(lambda: client.get(path)) for path in pages}
        head = client.head("/quizzes/1")
        primary_back(failover_db)
        return during, head, client.get("/quizzes")

    during, head, after = in_thread(drill, failover_db)
    assert from_standby(head) and head.content == b""
    for path, (response, took) in during.items():
        assert from_standby(response), (path, response.status_code, response.headers)
        assert took < BALANCER_WAIT, (path, took)
        assert not response.cookies, path
    assert "Capital of Italy" in during["/quizzes"][0].content.decode()
    assert "Rome" in during["/quizzes/1"][0].content.decode()
    assert 'name="answer"' in during["/quizzes/1/play"][0].content.decode()
    assert "is right" in during["/quizzes/1/check?answer=rome"][0].content.decode()
    assert [quiz["question"] for quiz in during["/quizzes.json"][0].json()][:1] == ["Capital of Italy"]
    assert 'id="score">0<' in during["/quizzes/randomplay"][0].content.decode()
    assert after.status_code == 200 and "X-Quiz-Read-From" not in after


def test_anonymous_reads_the_short_way_come_from_the_standby_too(db_access, failover_db, read_url):
    """gunicorn's application sends a cookieless GET of the busiest pages through a shorter stack (quiz.anonymous)."""
    from quiz.anonymous import Application

    def drill():
        app = Application()
        primary_away()
        during = {path: wsgi_call(app, path) for path in ("/quizzes", "/quizzes/1", "/quizzes/1/play")}
        primary_back(failover_db)
        return app, during, wsgi_call(app, "/quizzes/1")

    app, during, after = in_thread(drill, failover_db)
    assert app.handler_for({"REQUEST_METHOD": "GET", "PATH_INFO": "/quizzes/1"}) is app.short
    for path, (status, headers, body) in during.items():
        assert status.startswith("200 ") and headers.get("X-Quiz-Read-From") == "standby", (path, status, headers)
        assert headers["Vary"] == "Cookie" and "Set-Cookie" not in headers, path
    assert "Capital of Italy" in during["/quizzes"][2].decode() and "Rome" in during["/quizzes/1"][2].decode()
    assert after[0].startswith("200 ") and "X-Quiz-Read-From" not in after[1]


def test_a_logged_in_user_reads_on_and_the_primary_writes_last_seen_again(db_access, failover_db, read_url,
                                                                           monkeypatch):
    now = time.time()

    def drill():
        client = Client()
        login_as(client, "pepe")
        client.get("/quizzes")
        before = last_seen(client)
        primary_away()
        monkeypatch.setattr(time, "time", lambda: now + 60)  # a minute later: last_seen is due
        new_form = client.get("/quizzes/new")
        quizzes = client.get("/quizzes?search=capital")
        primary_back(failover_db)
        unchanged = last_seen(client)
        again = client.get("/quizzes/new")
        return before, new_form, quizzes, unchanged, again, last_seen(client), client.get("/goback")

    monkeypatch.setattr(time, "time", lambda: now)
    before, new_form, quizzes, unchanged, again, written, goback = in_thread(drill, failover_db)
    for page in (new_form, quizzes):
        assert from_standby(page)
        assert 'id="username">pepe<' in page.content.decode()
        assert "sessionid" not in page.cookies  # neither saved nor deleted
        assert "Cookie" in page["Vary"]
    assert 'name="question"' in new_form.content.decode()
    assert unchanged == before == int(now)
    assert again.status_code == 200 and "X-Quiz-Read-From" not in again
    assert written == int(now) + 60
    assert goback["Location"] == "/quizzes"  # the list page read from the standby was not noted


def test_a_session_the_standby_does_not_know_keeps_its_cookie(db_access, failover_db, read_url):
    """One committed an instant before the primary went away may not be visible there yet: the primary knows it."""
    def drill():
        client = Client()
        client.cookies["sessionid"] = "a" * 32
        primary_away()
        return client.get("/quizzes")

    response = in_thread(drill, failover_db)
    assert from_standby(response) and "sessionid" not in response.cookies  # not deleted, as an unknown one would be


def test_a_read_whose_connection_is_cut_mid_page_is_read_again_from_the_standby(db_access, failover_db, read_url,
                                                                                monkeypatch):
    """The session and the user were loaded from the primary; the server ends the session under the view."""
    import quiz.views.quizzes

    real_list = quiz.views.quizzes.QuizList
    cut = []

    def shut_down_then_list(*args, **kwargs):
        if not cut:
            cut.append(True)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return real_list(*args, **kwargs)

    def drill():
        client = Client()
        login_as(client, "pepe")
        monkeypatch.setattr(quiz.views.quizzes, "QuizList", shut_down_then_list)
        return client.get("/quizzes"), client.get("/quizzes")

    during, after = in_thread(drill, failover_db)
    assert from_standby(during) and 'id="username">pepe<' in during.content.decode()
    assert after.status_code == 200 and "X-Quiz-Read-From" not in after


def test_an_expired_login_is_not_used_on_the_standby_and_the_primary_logs_it_out(db_access, failover_db, read_url,
                                                                                 monkeypatch):
    now = time.time()

    def drill():
        client = Client()
        login_as(client, "pepe")
        client.get("/quizzes")
        primary_away()
        monkeypatch.setattr(time, "time", lambda: now + 6 * 60)  # six minutes idle
        during = client.get("/quizzes/new")
        primary_back(failover_db)
        return during, client.get("/quizzes", follow=True)

    monkeypatch.setattr(time, "time", lambda: now)
    during, after = in_thread(drill, failover_db)
    assert during.status_code == 302 and during["Location"].startswith("/session")
    assert during["X-Quiz-Read-From"] == "standby"
    assert "User session has expired." in after.content.decode()


def test_a_write_while_there_is_no_primary_is_a_503_and_nothing_is_saved(db_access, failover_db, read_url):
    def drill():
        client = Client()
        login_as(client, "pepe")
        primary_away()
        refused, took = timed(lambda: client.post("/quizzes", {"question": "Saved in a switchover?", "answer": "no"}))
        primary_back(failover_db)
        return refused, took, Quiz.objects.filter(question="Saved in a switchover?").count()

    refused, took, saved = in_thread(drill, failover_db)
    assert_try_again(refused, unavailable.WRITE)
    assert took < FEW_SECONDS
    assert saved == 0


def test_a_read_that_must_save_the_game_is_a_503_and_the_game_goes_on_later(db_access, failover_db, read_url):
    """A right answer in random play is the game's state, not bookkeeping: only the primary can keep it."""
    def drill():
        token = user("pepe").new_token()
        client = Client()
        primary_away()
        during = client.get("/quizzes/randomcheck/1?answer=Rome")
        api_list = client.get(f"/api/quizzes?token={token}")
        api_game = client.get(f"/api/quizzes/randomplay/next?token={token}")
        primary_back(failover_db)
        return during, api_list, api_game, client.get("/quizzes/randomcheck/1?answer=Rome")

    during, api_list, api_game, after = in_thread(drill, failover_db)
    assert_try_again(during)
    assert from_standby(api_list) and api_list.json()["quizzes"][0]["question"] == "Capital of Italy"
    assert api_game.status_code == 503 and api_game.json()["error"].startswith(unavailable.TITLE)
    assert after.status_code == 200 and 'id="score">1<' in after.content.decode()


def test_when_the_standby_is_away_too_a_read_is_a_503(db_access, failover_db):
    unset = set_read_url(f"postgresql://standby@127.0.0.1:{free_port()}/{failover_db['NAME']}")
    try:
        def drill():
            primary_away()
            return timed(lambda: Client().get("/quizzes"))

        response, took = in_thread(drill, failover_db)
    finally:
        unset()
    assert_try_again(response)
    assert took < FEW_SECONDS


def test_without_a_read_url_a_read_is_a_503_as_before(db_access, failover_db):
    def drill():
        primary_away()
        return Client().get("/quizzes")

    assert_try_again(in_thread(drill, failover_db))


def test_healthz_stays_up_while_the_standby_answers_reads(db_access, failover_db, read_url):
    """Every server loses the primary at once during a failover: marking them all
    DOWN would refuse the reads they can still answer from the standby."""
    def drill():
        primary_away()
        return Client().get("/healthz")

    response = in_thread(drill, failover_db)
    assert response.status_code == 200 and response.content == b"ok\n"
    assert "X-Quiz-Read-From" not in response


def test_healthz_fails_when_neither_the_primary_nor_the_standby_answers(db_access, failover_db):
    unset = set_read_url(f"postgresql://standby@127.0.0.1:{free_port()}/{failover_db['NAME']}")
    try:
        def drill():
            primary_away()
            return timed(lambda: Client().get("/healthz"))

        response, took = in_thread(drill, failover_db)
    finally:
        unset()
    assert response.status_code == 503 and b"database: OperationalError" in response.content
    assert took < FEW_SECONDS


def test_the_read_url_takes_no_write_even_if_asked(db_access, failover_db):
    """It may reach the primary too (here: as postgres, who may write): its connections are read-only."""
    from quiz.outage import database_unavailable

    unset = set_read_url(f"postgresql://postgres@127.0.0.1:{failover_db['PORT']}/{failover_db['NAME']}")
    try:
        def write_through_the_read_url():
            try:
                with connections[READ_ALIAS].cursor() as cursor:
                    cursor.execute("UPDATE quiz_quiz SET answer = 'Milan' WHERE id = 1")
            except Exception as exc:
                return exc
            return None

        refused = in_thread(write_through_the_read_url, failover_db)
    finally:
        unset()
    assert isinstance(refused.__cause__, psycopg.errors.ReadOnlySqlTransaction)
    assert database_unavailable(refused)  # were it ever tried, it would be a 503, never a 500


def test_the_read_url_is_parsed_like_the_database_url_and_read_only():
    db = read_database("postgresql://quiz:pw@127.0.0.1:5433/quiz")
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"]) == ("127.0.0.1", "5433", "quiz", "quiz")
    assert db["ENGINE"] == "quiz.postgres" and db["CONN_MAX_AGE"] == 30 and db["CONN_HEALTH_CHECKS"]
    assert db["OPTIONS"] == {"options": "-c default_transaction_read_only=on", "connect_timeout": 2, "keepalives": 1,
                             "keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 3,
                             "tcp_user_timeout": 3000}
    own = read_database("postgresql://h/quiz?connect_timeout=5&options=-c%20statement_timeout%3D1000")["OPTIONS"]
    assert own["connect_timeout"] == "5"
    assert own["options"] == "-c statement_timeout=1000 -c default_transaction_read_only=on"


def test_a_bad_read_url_is_refused_by_its_name():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="DATABASE_READ_URL has an empty host"):
        read_database("postgresql://quiz@a,,b/quiz")


def test_writes_and_migrations_never_go_to_the_standby():
    from quiz import standby

    router = standby.StandbyRouter()
    assert router.db_for_read(Quiz) is None  # no opinion: Django's own choice
    with standby.reads():
        assert router.db_for_read(Quiz) == READ_ALIAS
        assert router.db_for_write(Quiz) == "default"
    assert not standby.reading()
    assert router.allow_migrate("default", "quiz") and not router.allow_migrate(READ_ALIAS, "quiz")


SHOW_DATABASES = "import django; django.setup(); from django.conf import settings; print(sorted(settings.DATABASES))"


@pytest.mark.parametrize("url, aliases", [("", "['default']"),
                                          ("postgresql://quiz@127.0.0.1:5433/quiz", "['default', 'standby']")])
def test_the_standby_alias_exists_only_when_the_read_url_is_set(url, aliases):
    environment = {"DJANGO_SETTINGS_MODULE": "quiz.settings", "DJANGO_SECRET_KEY": "x",
                   "DATABASE_URL": "postgresql://quiz@127.0.0.1:5432/quiz", "DATABASE_READ_URL": url}
    result = subprocess.run([sys.executable, "-c", SHOW_DATABASES], env=environment, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == aliases
