"""The shorter way through the app for anonymous reads of the busiest pages.

Most of the traffic is visitors without a session reading the list, a quiz
or its play page (``GET /quizzes``, ``/quizzes/N``, ``/quizzes/N/play``).
For them, four of the middleware layers do work whose outcome is known
before it starts: with no cookie at all there is no session to load
(SessionMiddleware), the user is anonymous (AuthenticationMiddleware),
there are no messages to read or write (MessageMiddleware), and no login
to time out (IdleLogoutMiddleware). Together with the lazy objects they
put on the request, that was 16–23 % of such a page's time in the app
(docs/performance.md).

So ``quiz.wsgi:application`` holds two handlers: Django's, with
``settings.MIDDLEWARE``, for every request, and one whose stack is the
same list without those four (and without HealthzMiddleware, which only
answers ``/healthz``), with ``AnonymousVisitorMiddleware`` standing in for
them, for a GET or HEAD that carries no Cookie header on one of those
paths. Everything else keeps its place in the same order: the request log,
the Host check and Content-Length, the security headers, CSRF, the
database-outage answers and the standby reads, X-Frame-Options; a
middleware added to ``MIDDLEWARE`` later joins both stacks. The page, its
status and its headers are the same either way (tests/app/
test_anonymous_reads.py compares them), ``Vary: Cookie`` included.

The visitor's stand-ins are real objects, not fakes: ``request.user`` is
Django's AnonymousUser and ``request.session`` the configured session
engine's store with no key, which reads as empty. A view on this way that
tried to keep something in the session, or to add a message, would lose it
(nothing here saves a session or writes the messages' cookie), so both are
errors, never silent: the session's change fails the request, and Django
refuses a message when its middleware is absent.
"""

import re
from importlib import import_module

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.utils.cache import patch_vary_headers
from django.utils.module_loading import import_string

# The paths taken the short way (PATH_INFO, the query string aside): the list,
# a quiz's page and its play page. Anything else, even one character more,
# goes Django's way.
PATHS = re.compile(r"/quizzes(?:/[0-9]{1,18}(?:/play)?)?\Z", re.ASCII)

SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"
VISITOR = "quiz.anonymous.AnonymousVisitorMiddleware"
# Left out of the short way: what serves only a visitor with a session or a
# message cookie, and the health check's own answer.
LEFT_OUT = frozenset({
    SESSION,
    AUTHENTICATION,
    "django.contrib.messages.middleware.MessageMiddleware",
    "quiz.middleware.IdleLogoutMiddleware",
    "quiz.middleware.HealthzMiddleware",
})


def is_anonymous_read(environ):
    """True for a GET or HEAD without any cookie of the list, a quiz, or its play page."""
    return (environ.get("REQUEST_METHOD") in ("GET", "HEAD") and not environ.get("HTTP_COOKIE")
            and PATHS.match(environ.get("PATH_INFO", "")) is not None)


def short_stack(middleware):
    """The middleware of the short way: ``middleware`` without LEFT_OUT, the visitor where authentication was.

    None when the list has no session or authentication middleware to stand
    in for: then every request takes Django's way.
    """
    middleware = list(middleware)
    if SESSION not in middleware or AUTHENTICATION not in middleware:
        return None
    at = middleware.index(AUTHENTICATION)
    return [VISITOR if i == at else path for i, path in enumerate(middleware) if path not in LEFT_OUT or i == at]


class AnonymousVisitorMiddleware:
    """A visitor without cookies: AnonymousUser, an empty session that must stay unchanged, ``Vary: Cookie``."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.store = import_module(settings.SESSION_ENGINE).SessionStore

    def __call__(self, request):
        user = AnonymousUser()
        request.user = user

        async def auser():
            return user

        request.auser = auser
        request.session = session = self.store(None)
        response = self.get_response(request)
        if session.modified:
            raise ImproperlyConfigured(
                f"{request.method} {request.path} changed the session on the anonymous read path, where nothing "
                "saves it: take the path out of quiz.anonymous.PATHS")
        # What SessionMiddleware adds once the session was looked at, as the
        # authentication check always does: the page depends on the cookies.
        patch_vary_headers(response, ("Cookie",))
        return response


class StackHandler(WSGIHandler):
    """Django's WSGI handler with a middleware list of its own instead of ``settings.MIDDLEWARE``.

    Synchronous middleware only (QUIZ is served by gunicorn's sync and
    gthread workers); the hooks (process_view, process_template_response,
    process_exception) are collected in the order Django runs them.
    """

    def __init__(self, middleware):
        self.middleware = list(middleware)
        super().__init__()

    def load_middleware(self, is_async=False):
        if is_async:
            raise ImproperlyConfigured("StackHandler serves WSGI only")
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(self.middleware):
            factory = import_string(path)
            if not getattr(factory, "sync_capable", True):
                raise ImproperlyConfigured(f"{path} cannot run synchronously")
            try:
                layer = factory(handler)
            except MiddlewareNotUsed:
                continue
            if layer is None:
                raise ImproperlyConfigured(f"middleware factory {path} returned None")
            # Built from the inside out: an outer layer's view hook runs first,
            # its template-response and exception hooks last.
            if hasattr(layer, "process_view"):
                self._view_middleware.insert(0, layer.process_view)
            if hasattr(layer, "process_template_response"):
                self._template_response_middleware.append(layer.process_template_response)
            if hasattr(layer, "process_exception"):
                self._exception_middleware.append(layer.process_exception)
            handler = convert_exception_to_response(layer)
        self._middleware_chain = handler


class Application:
    """``quiz.wsgi:application``: anonymous reads the short way, every other request Django's way."""

    def __init__(self):
        self.full = WSGIHandler()
        stack = short_stack(settings.MIDDLEWARE)
        self.short = StackHandler(stack) if stack is not None else None

    def handler_for(self, environ):
        return self.short if self.short is not None and is_anonymous_read(environ) else self.full

    def __call__(self, environ, start_response):
        return self.handler_for(environ)(environ, start_response)
