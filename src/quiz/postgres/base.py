"""Django's PostgreSQL backend, making connections whose waits a request can bound.

Everything is Django's own (``django.db.backends.postgresql``) except the
class of the psycopg connections it opens: quiz.deadline.BoundedConnection,
so that no request waits for ever on a database that keeps a connection open
without answering. Django opens connections through ``DatabaseWrapper.Database``
(the psycopg module); this backend hands it the same module with only
``connect`` replaced.
"""

from django.db.backends.postgresql import base

from quiz.deadline import BoundedConnection


class _Psycopg:
    """psycopg, except that ``connect`` makes BoundedConnections."""

    connect = staticmethod(BoundedConnection.connect)

    def __getattr__(self, name):
        return getattr(base.Database, name)


class DatabaseWrapper(base.DatabaseWrapper):
    Database = _Psycopg()
