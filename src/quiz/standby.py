"""Reads from the standby while there is no primary.

During a failover or a planned switchover (2-10 s) no server takes writes,
but the standby still runs and holds everything the primary committed (it is
synchronous). So a GET or HEAD that meets the database away is answered from
``DATABASE_READ_URL`` (the alias ``standby``, settings.py) instead of a 503:
quiz.outage throws the failed connection away and runs the request once more
with this thread *reading from the standby*. While that flag is set,
``StandbyRouter`` sends the ORM's reads there (the session store, auth and
the views all read through the router) and ``connection_for_reads`` hands
the hand-written queries (quiz.queries) its connection; the flag is cleared
when the request's answer is made, so the next request starts on the primary
again. /healthz asks the standby too when the primary is away (a server that
can answer reads is up). Nothing is written meanwhile: writes and migrations
are routed to the primary only, whatever the flag; the bookkeeping a logged-in read would
write (the idle-logout time, the /goback page) is skipped and written again
by the next request on the primary; a read that must save something else
(the random game's score) is a 503 "try again", as a write is.
"""

import threading
from contextlib import contextmanager
from importlib import import_module

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils.cache import patch_vary_headers

from quiz.dburl import READ_ALIAS

READS = ("GET", "HEAD")  # the requests the standby may answer
HEADER = "X-Quiz-Read-From"  # on an answer read from the standby: "standby"

_thread = threading.local()


def reading():
    """Whether this thread is answering a request from the standby."""
    return getattr(_thread, "reading", False)


def configured():
    """Whether DATABASE_READ_URL is set."""
    return READ_ALIAS in connections.settings


def may_answer(request):
    """Whether the standby may answer ``request``, whose database is away."""
    return request.method in READS and configured() and not reading()


@contextmanager
def reads():
    """This thread reads from the standby until the block ends."""
    _thread.reading = True
    try:
        yield
    finally:
        _thread.reading = False


def connection_for_reads():
    """The connection a hand-written read query runs on: the standby's while this thread reads from it."""
    return connections[READ_ALIAS] if getattr(_thread, "reading", False) else connection


def discard_connection():
    """Close this thread's standby connection, without asking it anything first (see outage.discard_connection)."""
    try:
        connections[READ_ALIAS].close()
    except Exception:  # a broken connection may complain while closing; it is gone either way
        pass


def restart_session(request):
    """Load the request's session and user again, this time through the standby.

    The failed attempt may have loaded them from the primary and changed the
    session (a new last-seen time): nothing of it was saved, and the new
    attempt starts from what the database holds, as the first did.
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore
    request.session = store(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    for cached in ("_cached_user", "_acached_user"):
        request.__dict__.pop(cached, None)
    AuthenticationMiddleware(lambda request: None).process_request(request)


def mark(request, response):
    """Label the answer read from the standby, and keep SessionMiddleware from touching the session.

    Nothing in the session is to be saved (quiz.outage made sure of it), and
    a session the standby does not know yet (one committed an instant before
    the primary went away) must not lose its cookie: the primary will know it.
    """
    if request.session.accessed:
        patch_vary_headers(response, ("Cookie",))
    del request.session  # SessionMiddleware leaves a request without one alone
    response[HEADER] = "standby"
    return response


class StandbyRouter:
    """Django's database router: the standby for reads while this thread reads from it; the primary for the rest.

    With the flag down it has no opinion on reads, so Django does what it
    would without a router; it costs no query.
    """

    def db_for_read(self, model, **hints):
        return READ_ALIAS if getattr(_thread, "reading", False) else None

    def db_for_write(self, model, **hints):
        # Even for an object read from the standby: it may be written only where writes are taken.
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        # Both aliases hold the same data: an object read from one may point at one read from the other.
        if {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, READ_ALIAS}:
            return True
        return None

    def allow_migrate(self, db, app_label, **hints):
        return db == DEFAULT_DB_ALIAS
