"""Django's PostgreSQL backend, making connections whose waits a request can bound.

Everything is Django's own (``django.db.backends.postgresql``) except the
class of the psycopg connections it opens: quiz.deadline.BoundedConnection,
so that no request waits for ever on a database that keeps a connection open
without answering. Django opens connections through ``DatabaseWrapper.Database``
(the psycopg module); this backend hands it the same module with only
``connect`` replaced.

Django also switches psycopg's prepared statements off (``prepare_threshold``
None). They are switched back on here, but only for queries that ask for it
(``prepare=True``, quiz.queries' fixed reads): the threshold at which psycopg
would prepare a query by itself is set out of reach, and Django's own
cursors bind on the client, which never prepares.

And the health check (``CONN_HEALTH_CHECKS``: a ``SELECT 1`` before a request
first uses a connection kept from an earlier one) is skipped when it could
not tell anything new: on a connection that is idle, that the server answered
less than ``RECENT`` seconds ago, and on which it has said nothing since
(``is_usable``). Under load that is every request, and the round trip to
PostgreSQL, on the app server's own core, cost more than a tenth of a
page's CPU (docs/performance.md).
"""

import select
import time

from django.db.backends.postgresql import base
from psycopg import pq

from quiz.deadline import BoundedConnection

ONLY_WHEN_ASKED = 2**62  # runs of one query before psycopg prepares it unasked: never
# A connection the server answered less than this many seconds ago, and that has
# nothing to read, is taken as usable without asking (is_usable).
RECENT = 1.0


class _Psycopg:
    """psycopg, except that ``connect`` makes BoundedConnections."""

    connect = staticmethod(BoundedConnection.connect)

    def __getattr__(self, name):
        return getattr(base.Database, name)


class DatabaseWrapper(base.DatabaseWrapper):
    Database = _Psycopg()

    def get_connection_params(self):
        params = super().get_connection_params()
        if params.get("prepare_threshold") is None:
            params["prepare_threshold"] = ONLY_WHEN_ASKED
        return params

    def is_usable(self):
        """Whether the connection can serve the next request: Django's ``SELECT 1``, unless that tells nothing new.

        A server that restarts or ends the connection (a shutdown, an
        administrator, a crash: the kernel closes the socket) says so on the
        socket at once, so a connection with something to read is asked, as
        is one idle for ``RECENT`` seconds or more, or not idle. What is not
        asked is a connection that answered a moment ago and has heard
        nothing since, where ``SELECT 1`` would only say again what the last
        answer said. A server gone silent in that moment (no answer at all,
        not even a reset) is met by the request's own first query instead,
        bounded as every wait is (QUIZ_DB_WAIT_LIMIT), and answered as a
        database outage (quiz.outage: a read from the standby, or a 503);
        the ``SELECT 1`` would have waited as long before giving up.
        """
        conn = self.connection
        if (conn is not None and not conn.closed
                and time.monotonic() - getattr(conn, "answered_at", float("-inf")) < RECENT
                and conn.pgconn.status == pq.ConnStatus.OK
                and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
                and not _has_input(conn.pgconn.socket)):
            return True
        return super().is_usable()


def _has_input(fd):
    """Whether the server sent anything (or closed the socket) since the last answer was read."""
    try:
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
