"""Per-account back-off of failed logins, shared by every server through the database.

Guessing a password is trying many of them on one account. The first
FREE_FAILURES consecutive failures of an account name cost nothing; each
one after that blocks the name for 2^(n - FREE_FAILURES) seconds, at most
MAX_BLOCK_SECONDS, and a successful login starts the count again. While a
name is blocked a login for it is answered at once, without checking the
password: a refused attempt costs no password hash, so guessing through
the block gains nothing and a flood of them costs the servers little.

The count lives in the database (quiz.models.LoginThrottle), because the
balancer spreads one client's attempts over every server, and the servers
stay stateless. Every change is one statement (an upsert, a delete), so
concurrent failures on several servers all count. Times are the database's
(``statement_timestamp()``), one clock for every server. The name is the
one typed, lowercased, whether it is an account or not: the answers are
the same for both, so they tell nobody which names exist.

Recording is best effort: a database that fails to record a failure or to
forget the count after a success must not turn a login into an error; the
login goes on as it would have (quiz.views.session).
"""

import logging
import math
import random

from django.db import DatabaseError, connection, transaction

from quiz.models import LoginThrottle
from quiz.outage import database_unavailable, discard_connection

log = logging.getLogger(__name__)

FREE_FAILURES = 5
MAX_BLOCK_SECONDS = 300
KEY_LENGTH = LoginThrottle._meta.get_field("username").max_length
PURGE_EVERY = 100   # about one recorded failure in this many purges counts quiet for a day...
PURGE_BATCH = 1000  # ...at most this many at a time

TABLE = LoginThrottle._meta.db_table
# The block after a failure that makes the count ``n`` (an SQL expression),
# NULL while failures are free. The exponent is capped before power() so a
# long count cannot overflow a double; 2^16 is far above the cap anyway.
_BLOCK = (f"CASE WHEN {{n}} > {FREE_FAILURES} THEN statement_timestamp() + make_interval(secs => "
          f"LEAST({MAX_BLOCK_SECONDS}, power(2, LEAST({{n}} - {FREE_FAILURES}, 16)))) END")
_WAIT = "COALESCE(GREATEST(0, CEIL(EXTRACT(EPOCH FROM {t}.blocked_until - statement_timestamp()))), 0)"

STATE_SQL = f"SELECT failures, {_WAIT.format(t=TABLE)} FROM {TABLE} WHERE username = %s"
FAILED_SQL = (
    f"INSERT INTO {TABLE} AS t (username, failures, blocked_until, last_failure) "
    f"VALUES (%s, 1, {_BLOCK.format(n=1)}, statement_timestamp()) "
    f"ON CONFLICT (username) DO UPDATE SET failures = t.failures + 1, "
    f"blocked_until = {_BLOCK.format(n='t.failures + 1')}, last_failure = statement_timestamp() "
    f"RETURNING {_WAIT.format(t='t')}"
)
FORGET_SQL = f"DELETE FROM {TABLE} WHERE username = %s"
PURGE_SQL = (f"DELETE FROM {TABLE} WHERE username IN (SELECT username FROM {TABLE} "
             f"WHERE last_failure < statement_timestamp() - interval '1 day' LIMIT {PURGE_BATCH})")


def key(login_name):
    """The counter a typed name counts on: lowercased, as long as a username can be."""
    return login_name.lower()[:KEY_LENGTH]


def state(name):
    """(consecutive failures, whole seconds the name is still blocked, 0 if it is not) of a key."""
    with connection.cursor() as cursor:
        cursor.execute(STATE_SQL, [name])
        row = cursor.fetchone()
    return (0, 0) if row is None else (row[0], math.ceil(row[1]))


def failed(name):
    """Count a failed login of ``name``; return the seconds it is now blocked (0: not blocked, or not recorded)."""
    row = _best_effort("record a failed login", FAILED_SQL, name)
    if row is not None and random.randrange(PURGE_EVERY) == 0:
        _best_effort("purge old failed-login counts", PURGE_SQL)
    return 0 if row is None else math.ceil(row[0])


def succeeded(name):
    """Forget the failures of ``name`` after a successful login (best effort)."""
    _best_effort("reset a failed-login count", FORGET_SQL, name)


def _best_effort(what, sql, *params):
    """Run one statement in a savepoint; its first row (or True), or None if the database failed it."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, list(params))
            return cursor.fetchone() if cursor.description else True
    except DatabaseError as exc:
        log.warning("could not %s: %s: %s", what, type(exc.__cause__ or exc).__name__,
                    str(exc).strip().replace("\n", " | "))
        if database_unavailable(exc) and not connection.in_atomic_block:
            # As quiz.outage does: the next request must connect afresh (to the new primary).
            discard_connection()
        return None
