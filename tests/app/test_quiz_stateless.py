"""Behind a load balancer: no needless sessions, a cheap honest /healthz, CSRF, idle logout, fixed query counts."""

import time

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from quiz.models import Favourite, Quiz
from quiz.testing import login_as, make_quiz, user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/", "/quizzes", "/quizzes/1", "/quizzes/1/play", "/quizzes/1/check?answer=Rome",
                                  "/healthz", "/quizzes.json", "/author", "/quizzes/randomplay"])
def test_anonymous_reading_creates_no_session_and_sets_no_cookie(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert not response.cookies
    assert Session.objects.count() == 0


def test_healthz_is_200_with_database_and_media_root(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert response["Cache-Control"] == "no-store"


def test_healthz_writes_nothing(client, quiz_media):
    with CaptureQueriesContext(connection) as queries:
        client.get("/healthz")
    assert [q["sql"] for q in queries.captured_queries] == ["SELECT 1"]
    assert list(quiz_media.iterdir()) == []


def test_healthz_is_503_without_media_root(client, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "not-mounted")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert b"media root" in response.content


def test_healthz_is_503_when_the_media_root_is_not_writable(client, settings, quiz_media, monkeypatch):
    import quiz.middleware

    monkeypatch.setattr(quiz.middleware.os, "access", lambda path, mode: False)
    assert client.get("/healthz").status_code == 503


def test_healthz_answers_at_once_while_the_volume_stalls(client, quiz_media, monkeypatch):
    """A stalled shared volume stalls every server at once: marking them all
    DOWN would turn a storage hiccup into an outage (docs/reliability.md)."""
    import threading
    import time

    import quiz.middleware

    release = threading.Event()
    real_isdir = quiz.middleware.os.path.isdir

    def stalled(path):
        release.wait(5)
        return real_isdir(path)

    monkeypatch.setattr(quiz.middleware.os.path, "isdir", stalled)
    try:
        started = time.monotonic()
        first, second = client.get("/healthz"), client.get("/healthz")
        assert time.monotonic() - started < 2
        assert first.status_code == second.status_code == 200
    finally:
        release.set()


def test_healthz_is_503_when_the_volume_is_stuck_for_too_long(client, quiz_media, monkeypatch):
    import threading

    import quiz.middleware

    release = threading.Event()
    monkeypatch.setattr(quiz.middleware.os.path, "isdir", lambda path: release.wait(5))
    monkeypatch.setattr(quiz.middleware.MediaProbe, "STUCK", 0.5)
    try:
        assert client.get("/healthz").status_code == 200
        release.wait(0.6)
        response = client.get("/healthz")
        assert response.status_code == 503 and b"media root: not answering" in response.content
    finally:
        release.set()


def test_healthz_is_503_when_the_database_fails(client, monkeypatch):
    import quiz.middleware

    class Broken:
        def __enter__(self):
            raise quiz.middleware.connection.Database.OperationalError("server closed the connection")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(quiz.middleware.connection, "cursor", lambda: Broken())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert b"database" in response.content


def _database_fails(monkeypatch):
    import quiz.middleware

    class Broken:
        def __enter__(self):
            raise quiz.middleware.connection.Database.OperationalError("server closed the connection")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(quiz.middleware.connection, "cursor", lambda: Broken())


def test_healthz_tells_a_client_through_the_balancer_no_reason(client, monkeypatch, settings, tmp_path):
    """HAProxy adds X-Forwarded-For to every client request, never to its own health checks."""
    assert client.get("/healthz", HTTP_X_FORWARDED_FOR="203.0.113.9").content == b"ok\n"
    _database_fails(monkeypatch)
    settings.MEDIA_ROOT = str(tmp_path / "not-mounted")
    through = client.get("/healthz", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert through.status_code == 503 and through.content == b"unavailable\n"
    straight = client.get("/healthz")
    assert straight.status_code == 503
    assert straight.content == b"database: OperationalError\nmedia root: not a directory\n"


@pytest.mark.parametrize("trusted, remote, forwarded, told", [
    (["10.2.3.1", "10.2.3.2"], "10.2.3.2", None, True),
    (["10.2.3.1"], "10.2.1.7", None, False),
    (["10.2.3.0/24"], "10.2.3.77", None, True),
    (["10.2.3.1"], "::ffff:10.2.3.1", None, True),
    (["10.2.3.1"], "10.2.3.1", "203.0.113.9", False),
    (["10.2.3.1"], "not an address", None, False),
])
def test_healthz_tells_reasons_only_to_the_trusted_addresses(client, settings, tmp_path, trusted, remote,
                                                             forwarded, told):
    settings.QUIZ_HEALTH_DETAIL_FROM = trusted
    settings.MEDIA_ROOT = str(tmp_path / "not-mounted")
    extra = {"REMOTE_ADDR": remote, **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})}
    response = client.get("/healthz", **extra)
    assert response.status_code == 503
    assert response.content == (b"media root: not a directory\n" if told else b"unavailable\n")


def test_healthz_tells_the_server_itself_why_it_is_not_ready(client, settings, monkeypatch, tmp_path):
    """The deployment waits for "draining" from the server's own address across a restart (quizstack.deploy.web)."""
    import quiz.middleware

    class Socket:  # gunicorn's, in the environ: the address the request came in on
        def getsockname(self):
            return ("10.2.3.11", 8000)

    settings.QUIZ_HEALTH_DETAIL_FROM = ["10.2.3.1"]
    monkeypatch.setattr(quiz.middleware, "DRAIN_FILE", str(tmp_path / "draining"))
    (tmp_path / "draining").write_text("")
    itself = client.get("/healthz", REMOTE_ADDR="10.2.3.11", **{"gunicorn.socket": Socket()})
    assert itself.status_code == 503 and b"draining" in itself.content
    other = client.get("/healthz", REMOTE_ADDR="10.2.3.12", **{"gunicorn.socket": Socket()})
    assert other.status_code == 503 and other.content == b"unavailable\n"


def test_an_unknown_host_is_refused(client):
    assert client.get("/quizzes", HTTP_HOST="evil.example").status_code == 400


def test_state_changes_need_the_csrf_token():
    client = Client(enforce_csrf_checks=True)
    login_page = client.get("/session")
    token = login_page.cookies["csrftoken"].value
    assert client.post("/session", {"login": "pepe", "password": "5678"}).status_code == 403
    response = client.post("/session", {"login": "pepe", "password": "5678", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    pepe = user("pepe")
    assert client.post("/quizzes", {"question": "Q", "answer": "A"}).status_code == 403
    assert client.post("/quizzes/1", {"_method": "DELETE"}).status_code == 403
    assert client.put(f"/users/{pepe.id}/favourites/1").status_code == 403
    assert Quiz.objects.filter(pk=1).exists()
    assert not Favourite.objects.exists()


def test_the_star_script_sends_the_token_in_a_header():
    client = Client(enforce_csrf_checks=True)
    token = client.get("/session").cookies["csrftoken"].value
    client.post("/session", {"login": "pepe", "password": "5678", "csrfmiddlewaretoken": token})
    token = client.cookies["csrftoken"].value
    pepe = user("pepe")
    response = client.put(f"/users/{pepe.id}/favourites/1", headers={"X-CSRFToken": token, "Accept": "application/json"})
    assert response.status_code == 200
    assert response.json() == {"quizId": 1, "favourite": True}
    response = client.delete(f"/users/{pepe.id}/favourites/1", headers={"X-CSRFToken": token})
    assert response.json()["favourite"] is False


@pytest.mark.parametrize("path", ["/quizzes/1", "/session", "/users/1", "/users/1/token", "/quizzes/1/tips/1/accept",
                                  "/users/1/favourites/1"])
def test_get_never_changes_anything(client, path):
    login_as(client, "admin")
    before = (Quiz.objects.count(), Favourite.objects.count(), user("admin").api_token)
    client.get(path + "?_method=DELETE")
    client.get(path + "?_method=PUT")
    assert (Quiz.objects.count(), Favourite.objects.count(), user("admin").api_token) == before
    assert client.get("/users").status_code == 200  # still logged in


def test_idle_logout_after_five_minutes(client, monkeypatch):
    login_as(client, "pepe")
    assert client.get("/quizzes/new").status_code == 200
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 4 * 60)
    assert client.get("/quizzes/new").status_code == 200  # 4 minutes idle: still in
    monkeypatch.setattr(time, "time", lambda: now + 4 * 60 + 5 * 60 + 2)
    response = client.get("/quizzes", follow=True)
    assert "User session has expired." in response.content.decode()
    assert client.get("/quizzes/new")["Location"].startswith("/session")


def test_login_and_logout(client):
    response = client.post("/session", {"login": "pepe", "password": "5678", "redir": "/quizzes", "commit": "Login"})
    assert response["Location"] == "/quizzes"
    assert 'id="username">pepe<' in client.get("/quizzes").content.decode()
    response = client.post("/session", {"_method": "DELETE"})
    assert response["Location"] == "/session"
    assert client.get("/quizzes/new").status_code == 302


def test_login_failure_reshows_the_form_with_a_message(client):
    response = client.post("/session", {"login": "pepe", "password": "wrong", "redir": "/x", "commit": "Login"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "Authentication has failed" in page
    assert 'value="/x"' in page and 'name="login"' in page


def test_login_never_redirects_off_site(client):
    response = client.post("/session", {"login": "pepe", "password": "5678", "redir": "https://evil.example/"})
    assert response["Location"] == "/"


def test_goback_uses_the_session_only_when_there_is_one(client):
    client.get("/quizzes?pageno=1&search=capital")
    assert client.get("/goback")["Location"] == "/"  # anonymous: no session was made for it
    login_as(client, "pepe")
    client.get("/quizzes?search=capital")
    assert client.get("/goback")["Location"] == "/quizzes?search=capital"


def _list_queries(client, count):
    Quiz.objects.all().delete()
    pepe = user("pepe")
    for i in range(count):
        quiz = make_quiz(f"Question {i}", "a", author=pepe if i % 2 else None)
        if i % 3 == 0:
            Favourite.objects.create(user=pepe, quiz=quiz)
    client.get("/quizzes")  # warm-up: the session's last-seen time and /goback page are written once
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/quizzes")
    assert response.status_code == 200
    assert response.content.decode().count('href="/quizzes/') >= count
    return len(queries.captured_queries)


def test_list_queries_do_not_grow_with_the_page_anonymous(client):
    assert _list_queries(client, 2) == _list_queries(client, 10) == 1  # rows and total in one query


def test_list_queries_do_not_grow_with_the_page_logged_in(client, monkeypatch):
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)  # same second: no last-seen rewrite between requests
    login_as(client, "pepe")
    small = _list_queries(client, 2)
    assert small == _list_queries(client, 10) == 3  # session, user, page (with total and stars)


def test_template_loader_is_cached_when_debug_is_off(settings):
    from django.template import engines

    engine = engines["django"].engine
    assert not settings.DEBUG
    assert [type(loader).__module__ for loader in engine.template_loaders] == ["django.template.loaders.cached"]
