"""Middleware: the health check and the idle logout.

They are plain functions of the request, kept small because they run on every
request (see docs/performance.md for what each middleware costs).
"""

import functools
import ipaddress
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.http import HttpResponse

from quiz import standby
from quiz.outage import discard_connection


def media_root_problem(root):
    """Why the media root cannot take uploads, or None."""
    if not os.path.isdir(root):
        return "media root: not a directory"
    if not os.access(root, os.R_OK | os.W_OK | os.X_OK):
        return "media root: not readable and writable"
    return None


class MediaProbe:
    """Looks at the media root off the health check's own thread.

    The media root is a folder of the shared volume. When a storage node dies,
    the volume's clients stall every call for up to the volume's ping timeout
    (seconds), on every server at the same moment; a health check that waited
    would mark every server DOWN together and turn a storage stall into a
    total outage. So the probe runs in one background thread per process: the
    check waits for it only briefly, a probe still running is reported as
    healthy (the volume is slow, not gone), and only one stuck for longer than
    any stall the volume is allowed (STUCK seconds) counts as a problem. A
    missing mount answers at once and still fails the check.
    """

    WAIT = 0.3
    STUCK = 10.0

    def __init__(self):
        self.lock = threading.Lock()
        self.running = None          # (future, started) while a probe is in flight
        self.pool = None

    def problem(self, root):
        with self.lock:
            if self.running and not self.running[0].done():
                future, started = self.running
            else:
                if self.pool is None:
                    self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="media-probe")
                future, started = self.pool.submit(media_root_problem, root), time.monotonic()
                self.running = (future, started)
        try:
            return future.result(timeout=self.WAIT)
        except FutureTimeout:
            stalled = time.monotonic() - started
            if stalled > self.STUCK:
                return f"media root: not answering for {stalled:.0f} s"
            return None


_media_probe = MediaProbe()


def standby_answers():
    """Whether this server can still answer reads from the standby (DATABASE_READ_URL).

    While there is no primary (a failover, a switchover) every server loses
    it at the same moment, like the shared volume: a health check failing for
    that would mark them all DOWN together, and the balancer would refuse the
    reads they can still answer from the standby (quiz.standby). A server
    that reaches neither is down.
    """
    if not standby.configured():
        return False
    try:
        with standby.reads():
            with standby.connection_for_reads().cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        return True
    except Exception:  # any failure: not even the standby answers
        return False
    finally:
        standby.discard_connection()


# While this file exists the server says it is not ready, so the load
# balancers stop sending it new requests: a deployment drains a server this
# way before restarting it (quizstack.deploy.web), then removes the file.
DRAIN_FILE = os.environ.get("QUIZ_DRAIN_FILE", "/run/quiz/draining")


def health_problems():
    """What stops this server from serving, as a list of short reasons (empty: healthy).

    Cheap on purpose (the load balancer asks several times a second): one
    ``SELECT 1`` on the persistent connection and two ``stat``-like calls on
    the media root (through MediaProbe, so a stalled volume delays nothing).
    Without a primary it asks the standby instead (standby_answers).
    Bounded when the database is away: connecting gives up after
    connect_timeout per host, a silent or hung server after
    tcp_user_timeout or QUIZ_DB_WAIT_LIMIT (settings.py).
    It writes nothing: a health check that created files or rows would itself
    fill the shared volume and the database.
    """
    if os.path.exists(DRAIN_FILE):
        return ["draining: being restarted by a deployment"]
    problems = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not healthy", never a 500
        # Not close_if_unusable_or_obsolete: asking a silent server whether the
        # connection is usable would wait on it a second time.
        discard_connection()
        if not standby_answers():
            problems.append(f"database: {type(exc).__name__}")
    media = _media_probe.problem(settings.MEDIA_ROOT)
    if media:
        problems.append(media)
    return problems


@functools.lru_cache(maxsize=8)
def _networks(entries):
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _address(text):
    """The IP address of a REMOTE_ADDR, IPv4 for an IPv4-mapped IPv6 one; None if it is none."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def _own_address(request):
    """The address the request came in on (gunicorn's socket), or None where that is not known."""
    sock = request.META.get("gunicorn.socket")
    try:
        return _address(sock.getsockname()[0]) if sock is not None else None
    except (OSError, IndexError, TypeError):
        return None


def tells_details(request):
    """Whether the health check's reasons may be told to ``request``'s sender.

    The balancers ask straight (HAProxy adds X-Forwarded-For to the clients'
    requests, never to its health checks), and so does the deployment from
    the server itself (waiting for "draining" across a restart). A client
    gets no details: a database's error class is a map for an attacker.
    """
    if "HTTP_X_FORWARDED_FOR" in request.META:
        return False
    trusted = settings.QUIZ_HEALTH_DETAIL_FROM
    if trusted is None:
        return True
    remote = _address(request.META.get("REMOTE_ADDR", ""))
    if remote is None:
        return False
    return remote == _own_address(request) or any(remote in network for network in _networks(tuple(trusted)))


class HealthzMiddleware:
    """Answer ``/healthz`` before sessions, CSRF or authentication even look at it.

    The status is for everyone (200 healthy, 503 not); why it is 503 is
    said only to those tells_details trusts, everyone else reads "unavailable".
    """

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
        if not problems:
            body = "ok\n"
        else:
            body = "\n".join(problems) + "\n" if tells_details(request) else "unavailable\n"
        response = HttpResponse(body, status=503 if problems else 200, content_type="text/plain")
        response["Cache-Control"] = "no-store"
        return response


class IdleLogoutMiddleware:
    """Log a user out after five minutes without requests, as the original did.

    The time of the last request lives in the (database) session, so it holds
    whichever server the next request lands on. It is rewritten at most once a
    second, and only for logged-in users: anonymous visitors get no session.
    A request read from the standby (quiz.standby) can write nothing: it
    leaves the time as it was, for the next request on the primary to write,
    and a login already expired is not used, its logout waiting likewise.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = int(time.time())
            last = request.session.get("last_seen")
            expired = last is not None and now - last > settings.QUIZ_IDLE_LOGOUT_SECONDS
            if standby.reading():
                if expired:
                    request.user = AnonymousUser()
            elif expired:
                logout(request)
                messages.info(request, "User session has expired.")
            elif last != now:
                request.session["last_seen"] = now
        return self.get_response(request)
