"""When the database fails under a request: a 503 "try again", never a 500.

The database is a primary and a hot standby, with automatic failover. For a
few seconds at a time it can refuse connections, drop them mid-request, keep
them open without answering, shut down (AdminShutdown), or take a write on a
server that has become read-only (a persistent connection to a demoted
primary passes Django's health check, a ``SELECT 1``, and then refuses every
write with SQLSTATE 25006). None of these is a bug to show as a 500: the
request is answered 503 with ``Retry-After`` and QUIZ's "back in a moment"
page (quiz.unavailable), the write having been rolled back by its view's
transaction. The connection is thrown away, so the next request connects
afresh and, through ``target_session_attrs=read-write``, finds the primary
wherever it now is. The middleware catches failures while loading the session
and the user, and from the views (process_exception); what is left (saving
the session after the view) arrives in ``server_error``, Django's handler500.
When ``DATABASE_READ_URL`` is set, a GET or HEAD is answered from the standby
instead (quiz.standby), and only if that fails too is it a 503.
"""

import logging
import sys

import psycopg
from django.conf import settings
from django.db import OperationalError, connection
from django.http import HttpResponse, JsonResponse
from django.views import defaults

from quiz import deadline, standby, unavailable

log = logging.getLogger(__name__)

READ_ONLY = "25006"  # read_only_sql_transaction: a write on a standby or a demoted primary
# Also "not now" whatever their Python class: connection exceptions (08), operator
# intervention (57: admin or crash shutdown, cannot connect now), insufficient resources (53).
TRANSIENT_CLASSES = ("08", "57", "53")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def database_unavailable(exc):
    """Whether ``exc`` means the database cannot serve this now (rather than a bug or bad data).

    Django re-raises psycopg's errors as its own (django.db.OperationalError
    for psycopg.OperationalError, InternalError for ReadOnlySqlTransaction…)
    with psycopg's as ``__cause__``, which carries the SQLSTATE.
    """
    while exc is not None:
        if isinstance(exc, (OperationalError, psycopg.OperationalError)):
            return True
        state = getattr(exc, "sqlstate", None) or ""
        if state == READ_ONLY or state.startswith(TRANSIENT_CLASSES):
            return True
        exc = exc.__cause__
    return False


def discard_connection():
    """Close this thread's database connection, without asking it anything first.

    Django would keep a connection that still answers ``SELECT 1`` (one to a
    standby does); the next request must connect afresh instead.
    """
    try:
        connection.close()
    except Exception as exc:  # a broken connection may complain while closing; it is gone either way
        log.debug("closing the failed database connection: %s", exc)


def unavailable_response(request, detail):
    """503 with Retry-After: the shared page, or JSON for the API and the star script."""
    wants_json = (request.path.startswith("/api/") or request.path.endswith(".json")
                  or request.headers.get("Accept", "").startswith("application/json"))
    if wants_json:
        response = JsonResponse({"error": f"{unavailable.TITLE}: {detail[0].lower()}{detail[1:]}"}, status=503)
    else:
        response = HttpResponse(unavailable.page(detail), status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(unavailable.RETRY_AFTER)
    response["Cache-Control"] = "no-store"
    return response


def _detail(request):
    return unavailable.READ if request.method in SAFE_METHODS else unavailable.WRITE


def _log_failure(request, exc, then=""):
    log.warning("database unavailable for %s %s: %s: %s%s", request.method, request.path,
                type(exc.__cause__ or exc).__name__, str(exc).strip().replace("\n", " | "), then)


def _answer(request, exc, detail):
    _log_failure(request, exc)
    discard_connection()
    return unavailable_response(request, detail)


class DatabaseOutageMiddleware:
    """A request that meets an unavailable database answers 503 "try again", or a read from the standby.

    It sits right after AuthenticationMiddleware and loads the session and
    the user there (IdleLogoutMiddleware would, a step later): for a
    logged-in user that is where the database is met first, and a failure
    caught here is answered like one in a view, without the traceback and
    the got_request_exception of an uncaught error. It adds no query: a
    visitor without a session cookie costs none, and the rest were made anyway.

    A GET or HEAD, with DATABASE_READ_URL set, is then run once more, from
    the session on, reading from the standby (quiz.standby). A view's failure
    is only noted by process_exception, under a placeholder answer, so that
    the middleware below lets go of the request before it runs again here.
    """

    FAILURE = "_quiz_database_failure"  # request attribute: the failure a view met, for __call__

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response, failure = self._attempt(request)
        if failure is None:
            return response
        if not standby.may_answer(request):
            # Nothing was written yet, or the view's transaction rolled back: a write is known not to be saved.
            return _answer(request, failure, _detail(request))
        _log_failure(request, failure, "; reading from the standby")
        discard_connection()
        with standby.reads():
            standby.restart_session(request)
            response, failure = self._attempt(request)
            if failure is not None:
                _log_failure(request, failure, "; not answered from the standby either")
                standby.discard_connection()
                return unavailable_response(request, unavailable.READ)
            if request.session.modified:
                # Bookkeeping was skipped (quiz.standby): what is left is to be saved, and only the primary can.
                log.warning("%s %s read from the standby has a session change to save: try again",
                            request.method, request.path)
                return unavailable_response(request, unavailable.READ)
            return standby.mark(request, response)

    def _attempt(self, request):
        """The answer to ``request``, or None and the database failure that stopped it."""
        try:
            request.user.is_authenticated
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            return None, exc
        response = self.get_response(request)
        return response, request.__dict__.pop(self.FAILURE, None)

    def process_exception(self, request, exception):
        if not database_unavailable(exception):
            return None
        if request.method in standby.READS and standby.configured():
            request.__dict__[self.FAILURE] = exception  # answered by __call__, from the standby if it can
            return HttpResponse(status=503)
        # The view's transaction rolled back: a write is known not to be saved.
        return _answer(request, exception, _detail(request))


def server_error(request):
    """handler500: a database failure elsewhere is a 503 too; anything else is Django's 500.

    What is left to arrive here is saving the session after the view, when a
    write may well be saved: the page says only "try again".
    """
    exc = sys.exc_info()[1]
    if exc is not None and database_unavailable(exc):
        return _answer(request, exc, unavailable.READ)
    return defaults.server_error(request)


def bound_request_waits(**kwargs):
    """request_started: this thread's database waits are bounded until the request is finished."""
    deadline.begin_request(settings.QUIZ_DB_WAIT_LIMIT)


def unbound_request_waits(**kwargs):
    deadline.end_request()
