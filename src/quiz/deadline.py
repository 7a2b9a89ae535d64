"""A bound on every wait for the database while a request is being answered.

libpq's timeouts (``dburl.BOUNDED_WAITS``) end a wait on a host that sends no
TCP answer at all. A host whose kernel still answers but whose PostgreSQL does
not (the process stopped or stuck; in the lab, a frozen host, whose kernel is
the machine's) acknowledges every packet and every keepalive, so a query on an
established connection would wait for ever, and with it the request, its
gunicorn thread and, one thread after another, the whole server; the balancer
would then see every server hang at once. So while a request is answered
(between Django's request_started and request_finished signals, see apps.py),
each wait of a psycopg connection is registered with one watchdog thread per
process, and a wait still running after ``QUIZ_DB_WAIT_LIMIT`` seconds has its
socket shut down: psycopg then fails it at once with an OperationalError, which
quiz.outage answers as a 503 after throwing the connection away. Only sockets
are touched, so this works with any psycopg 3. Management commands are never
bound (``migrate`` waits on an advisory lock for as long as another server
migrates).
"""

import itertools
import math
import os
import socket
import threading
import time

import psycopg

_request = threading.local()


def begin_request(seconds):
    """Bound this thread's database waits to ``seconds`` each until end_request()."""
    _request.limit = seconds


def end_request():
    _request.limit = None


def current_limit():
    return getattr(_request, "limit", None)


class NoAnswer(psycopg.OperationalError):
    """The database kept a wait open past the limit; its connection has been cut."""


class Watchdog:
    """One thread that shuts down the sockets of waits past their deadline."""

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # gunicorn --preload forks after import

    def _reset(self):
        self._cond = threading.Condition(threading.Lock())
        self._waits = {}             # token -> [deadline, fd, cut]
        self._tokens = itertools.count()
        self._wake_at = math.inf     # when the thread looks next (inf: it sleeps until notified)
        self._started = False

    def begin(self, fd, seconds):
        deadline = time.monotonic() + seconds
        with self._cond:
            if not self._started:
                threading.Thread(target=self._run, name="quiz-db-watchdog", daemon=True).start()
                self._started = True
            token = next(self._tokens)
            self._waits[token] = [deadline, fd, False]
            if deadline < self._wake_at:  # only the first wait of a quiet spell wakes the thread
                self._wake_at = deadline
                self._cond.notify()
        return token

    def end(self, token):
        """Forget the wait; True if its socket was cut."""
        with self._cond:
            entry = self._waits.pop(token, None)
        return bool(entry and entry[2])

    def _run(self):
        with self._cond:
            while True:
                now = time.monotonic()
                wake = math.inf
                for entry in self._waits.values():
                    deadline, fd, cut = entry
                    if cut:
                        continue
                    if deadline <= now:
                        _shut_down(fd)
                        entry[2] = True
                    else:
                        wake = min(wake, deadline)
                self._wake_at = wake
                self._cond.wait(None if wake == math.inf else wake - now)


def _shut_down(fd):
    """End every wait on the socket ``fd`` (the connection's own descriptor stays open, owned by psycopg)."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut or reset: the wait ends anyway
    finally:
        sock.close()


watchdog = Watchdog()


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose waits a request can bound (quiz.postgres makes these).

    It also notes when the server last answered (``answered_at``, monotonic
    seconds): quiz.postgres skips the health check's ``SELECT 1`` on a
    connection that answered a moment ago.
    """

    answered_at = -math.inf

    def wait(self, gen, *args, **kwargs):
        seconds = current_limit()
        if seconds is None:
            result = super().wait(gen, *args, **kwargs)
            self.answered_at = time.monotonic()
            return result
        token = watchdog.begin(self.pgconn.socket, seconds)
        try:
            result = super().wait(gen, *args, **kwargs)
        except psycopg.Error as exc:
            if watchdog.end(token):
                raise NoAnswer(f"no answer from the database in {seconds:g} s: connection cut") from exc
            raise
        except BaseException:
            watchdog.end(token)
            raise
        watchdog.end(token)
        self.answered_at = time.monotonic()
        return result
