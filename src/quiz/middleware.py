"""Middleware: the health check, the Host check and the idle logout.

They are plain functions of the request, kept small because they run on every
request (see docs/performance.md for what each middleware costs).
"""

import os
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.db import connection
from django.http import HttpResponse


def health_problems():
    """What stops this server from serving, as a list of short reasons (empty: healthy).

    Cheap on purpose (the load balancer asks every second or two): one
    ``SELECT 1`` on the persistent connection and two ``stat``-like calls. It
    writes nothing: a health check that created files or rows would itself
    fill the shared volume and the database.
    """
    problems = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not healthy", never a 500
        problems.append(f"database: {type(exc).__name__}")
        connection.close_if_unusable_or_obsolete()
    root = settings.MEDIA_ROOT
    if not os.path.isdir(root):
        problems.append("media root: not a directory")
    elif not os.access(root, os.R_OK | os.W_OK | os.X_OK):
        problems.append("media root: not readable and writable")
    return problems


class HealthzMiddleware:
    """Answer ``/healthz`` before sessions, CSRF or authentication even look at it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info != "/healthz":
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = HttpResponse("method not allowed\n", status=405, content_type="text/plain")
            response["Allow"] = "GET, HEAD"
            return response
        problems = health_problems()
        body = "ok\n" if not problems else "\n".join(problems) + "\n"
        response = HttpResponse(body, status=503 if problems else 200, content_type="text/plain")
        response["Cache-Control"] = "no-store"
        return response


class HostCheckMiddleware:
    """Validate the Host header against DJANGO_ALLOWED_HOSTS on every request.

    Django checks it only when something asks for the host, and our minimal
    middleware stack rarely does; a request for an unknown host gets a 400.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.get_host()  # raises DisallowedHost, turned into a 400 by Django
        return self.get_response(request)


class IdleLogoutMiddleware:
    """Log a user out after five minutes without requests, as the original did.

    The time of the last request lives in the (database) session, so it holds
    whichever server the next request lands on. It is rewritten at most once a
    second, and only for logged-in users: anonymous visitors get no session.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = int(time.time())
            last = request.session.get("last_seen")
            if last is not None and now - last > settings.QUIZ_IDLE_LOGOUT_SECONDS:
                logout(request)
                messages.info(request, "User session has expired.")
            elif last != now:
                request.session["last_seen"] = now
        return self.get_response(request)
