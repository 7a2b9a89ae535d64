"""Anonymous reads of the busiest pages take a shorter middleware stack, and nobody can tell.

``quiz.wsgi:application`` sends a GET or HEAD without cookies of the list, a
quiz or its play page through a stack without sessions, authentication,
messages and idle logout (quiz.anonymous). These tests call that WSGI
application as gunicorn does (Django's test client has a handler of its own,
with the whole stack) and hold the short way to Django's: same status, same
headers, same bytes, the same queries; everything else goes Django's way.
"""

import logging

import pytest
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from quiz.anonymous import AnonymousVisitorMiddleware, Application, short_stack
from quiz.models import Tip
from quiz.testing import image_upload, make_quiz, make_user, user, wsgi_call
from quiz.uploads import store_image

pytestmark = pytest.mark.django_db

TRICKY = "Tom's <b>\"bold\"</b> & <script>alert(1)</script>?"


@pytest.fixture
def app():
    """The application gunicorn serves, on the test's own database connection.

    As Django's test client does, the connection is not closed between
    requests: it holds the test's transaction.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield Application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def environ(path, method="GET", **extra):
    """The environ keys that choose the way (quiz.anonymous.Application.handler_for)."""
    path_info, _, query = path.partition("?")
    return {"REQUEST_METHOD": method, "PATH_INFO": path_info, "QUERY_STRING": query, **extra}


def call(handler, env):
    """wsgi_call with an environ made by ``environ``."""
    path = env["PATH_INFO"] + ("?" + env["QUERY_STRING"] if env["QUERY_STRING"] else "")
    extra = {k: v for k, v in env.items() if k not in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING")}
    return wsgi_call(handler, path, env["REQUEST_METHOD"], **extra)


@pytest.fixture
def pages():
    """A quiz with a picture, an accepted tip and a pending one, tricky text everywhere; enough for two list pages."""
    pepe = user("pepe")
    quiz = make_quiz(TRICKY, "forty <two>", author=pepe, attachment=store_image(image_upload("a.png")))
    Tip.objects.create(quiz=quiz, text="Don't <b>panic</b>", author=pepe, accepted=True)
    Tip.objects.create(quiz=quiz, text="pending & unseen", author=make_user("ana"))
    for i in range(12):
        make_quiz(f"Filler {i}?", str(i), author=pepe if i % 2 else None)
    return quiz


def test_the_short_stack_is_django_s_without_what_serves_a_session():
    assert short_stack(settings.MIDDLEWARE) == [
        "quiz.requestlog.RequestLogMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "quiz.anonymous.AnonymousVisitorMiddleware",
        "quiz.outage.DatabaseOutageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]


def test_a_middleware_added_later_joins_the_short_stack_too():
    added = [*settings.MIDDLEWARE[:3], "example.NewHeaderMiddleware", *settings.MIDDLEWARE[3:]]
    stack = short_stack(added)
    assert stack.index("example.NewHeaderMiddleware") == stack.index("django.middleware.common.CommonMiddleware") + 1


def test_without_sessions_and_authentication_every_request_goes_django_s_way(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "sessions" not in m and "auth" not in m]
    assert short_stack(settings.MIDDLEWARE) is None
    app = Application()
    assert app.handler_for(environ("/quizzes")) is app.full


@pytest.mark.parametrize("method, path, cookie, short", [
    ("GET", "/quizzes", None, True),
    ("GET", "/quizzes?search=capital&pageno=2", None, True),
    ("HEAD", "/quizzes/3", None, True),
    ("GET", "/quizzes/3/play?answer=Rome", None, True),
    ("GET", "/quizzes", "", True),  # an empty Cookie header carries no cookie
    ("GET", "/quizzes", "csrftoken=abc", False),  # any cookie at all: Django's way
    ("GET", "/quizzes/3", "sessionid=abc", False),
    ("POST", "/quizzes", None, False),
    ("PUT", "/quizzes/3", None, False),
    ("GET", "/quizzes/new", None, False),
    ("GET", "/quizzes/3/edit", None, False),
    ("GET", "/quizzes/3/check?answer=Rome", None, False),
    ("GET", "/quizzes/randomplay", None, False),  # keeps the score in the session
    ("GET", "/quizzes.json", None, False),
    ("GET", "/quizzes/3/play/", None, False),
    ("GET", "/quizzes/\u0663", None, False),  # a digit, but not an ASCII one
    ("GET", "/healthz", None, False),
    ("GET", "/", None, False),
])
def test_which_requests_take_the_short_way(app, method, path, cookie, short):
    extra = {} if cookie is None else {"HTTP_COOKIE": cookie}
    assert app.handler_for(environ(path, method, **extra)) is (app.short if short else app.full)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_short_way_answers_byte_for_byte_as_django_s(app, pages, method):
    quiz = pages.id
    for path in ["/quizzes", "/quizzes?pageno=2", "/quizzes?search=Tom%27s", "/quizzes?search=nothing-like-it",
                 f"/quizzes/{quiz}", f"/quizzes/{quiz}/play", f"/quizzes/{quiz}/play?answer=forty+%3Ctwo%3E",
                 "/quizzes/999999999", "/quizzes/999999999/play", "/quizzes?pageno=x"]:
        env = environ(path, method)
        assert app.handler_for(env) is app.short
        short, full = call(app, env), call(app.full, env)
        assert short == full, path
        status, headers, body = short
        assert headers["Vary"] == "Cookie" and headers["X-Frame-Options"] == "DENY", path
        assert headers["X-Content-Type-Options"] == "nosniff" and "Set-Cookie" not in headers, path
    page = call(app, environ(f"/quizzes/{quiz}"))[2].decode()
    assert "Tom&#x27;s &lt;b&gt;&quot;bold&quot;&lt;/b&gt;" in page and "Don&#x27;t &lt;b&gt;panic" in page
    assert "pending &amp; unseen" not in page and "/uploads/" in page


def test_the_short_way_checks_the_host_as_django_s(app, caplog):
    caplog.set_level(logging.CRITICAL, logger="django.security")
    env = environ("/quizzes", HTTP_HOST="evil.example")
    assert app.handler_for(env) is app.short
    assert call(app, env)[0].startswith("400 ") and call(app.full, env)[0].startswith("400 ")


def test_the_short_way_makes_the_same_queries(app, pages):
    for path, count in [("/quizzes", 1), (f"/quizzes/{pages.id}", 2), (f"/quizzes/{pages.id}/play", 2)]:
        call(app, environ(path))  # prepared statements made once per connection
        with CaptureQueriesContext(connection) as short:
            call(app, environ(path))
        with CaptureQueriesContext(connection) as full:
            call(app.full, environ(path))
        assert [q["sql"] for q in short.captured_queries] == [q["sql"] for q in full.captured_queries], path
        assert len(short.captured_queries) == count, path


def test_the_short_way_is_logged(app, caplog):
    caplog.set_level(logging.INFO, logger="quiz.request")
    call(app, environ("/quizzes?pageno=1", HTTP_X_REQUEST_ID="lb-42"))
    (record,) = [r for r in caplog.records if r.name == "quiz.request"]
    assert record.getMessage().startswith("GET /quizzes?pageno=1 200 ") and record.getMessage().endswith(" user=-")
    assert record.request_id == "lb-42"


def test_a_logged_in_visitor_goes_django_s_way_and_is_known(app, client, pages):
    client.force_login(user("pepe"))  # no request: the test client would put close_old_connections back
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in client.cookies.items())
    env = environ(f"/quizzes/{pages.id}", HTTP_COOKIE=cookie)
    assert app.handler_for(env) is app.full
    status, headers, body = call(app, env)
    assert status.startswith("200 ") and 'id="username">pepe<' in body.decode()
    assert 'id="username"' not in call(app, environ(f"/quizzes/{pages.id}"))[2].decode()


def _visitor(view):
    request = RequestFactory().get("/quizzes")
    return AnonymousVisitorMiddleware(view), request


def test_a_view_that_keeps_something_in_the_session_fails_instead_of_losing_it():
    def view(request):
        request.session["goback"] = "/quizzes"
        return None

    middleware, request = _visitor(view)
    with pytest.raises(ImproperlyConfigured, match="changed the session on the anonymous read path"):
        middleware(request)


def test_a_view_that_adds_a_message_fails_instead_of_losing_it():
    def view(request):
        messages.success(request, "never shown")

    middleware, request = _visitor(view)
    with pytest.raises(messages.MessageFailure):
        middleware(request)


def test_the_visitor_reads_as_anonymous_with_an_empty_session():
    seen = {}

    def view(request):
        from django.http import HttpResponse

        seen.update(user=request.user, key=request.session.session_key, goback=request.session.get("goback"))
        return HttpResponse("ok")

    middleware, request = _visitor(view)
    response = middleware(request)
    assert not seen["user"].is_authenticated and seen["key"] is None and seen["goback"] is None
    assert response["Vary"] == "Cookie"
