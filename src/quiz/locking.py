"""One server at a time: a PostgreSQL advisory lock around migrate and seed.

Every application server runs ``migrate`` and ``seed`` when it starts, and in
the lab they all start together. The lock is held by a database session, so
whichever server gets it first does the work; the others block on
``pg_advisory_lock`` and, once it is released, find nothing left to do. The
key is fixed (it only has to be the same on every server).
"""

from contextlib import contextmanager

from django.db import connection

# "QUIZ" in ASCII; any constant shared by all servers would do.
SETUP_LOCK_KEY = 0x5155495A


@contextmanager
def setup_lock(key=SETUP_LOCK_KEY):
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
