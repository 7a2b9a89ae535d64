"""Turn a ``DATABASE_URL`` into Django's ``DATABASES`` entry.

Deployment hands every server one URL, in libpq's own syntax: one host
(``postgresql://user:pass@host:port/db``) or, for a replicated database, all
of them at once (``postgresql://user:pass@10.2.4.31:5432,10.2.4.32:5432/db
?target_session_attrs=read-write``), so that a new connection tries them in
turn and keeps the primary. Parsing it here, with the standard library, avoids
a dependency for a page of code, and lets us refuse anything that is not
PostgreSQL: the app is stateless only if every server shares one database.
A URL that libpq would misread (an empty host in a list, a bad port) is
refused here with a clear ImproperlyConfigured, at start, rather than as a
connection error on the first request. ``DATABASE_READ_URL``, where reads go
while there is no primary, is parsed the same way (``read_database``).
"""

from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

SCHEMES = ("postgres", "postgresql")

# Waits on the database are bounded by default (settings.py says why); a
# query parameter of the URL with the same name wins.
BOUNDED_WAITS = {
    "connect_timeout": 2,        # seconds per host to connect (libpq's minimum is 2)
    "keepalives": 1,
    "keepalives_idle": 2,        # seconds of silence before the first TCP keepalive probe
    "keepalives_interval": 1,    # seconds between probes
    "keepalives_count": 3,       # unanswered probes before the connection is dead
    "tcp_user_timeout": 3000,    # ms that sent data may stay unacknowledged
}

READ_ALIAS = "standby"  # Django's alias for DATABASE_READ_URL's database (quiz.standby)

# libpq's ``options``: every transaction on the read URL's connections is read-only.
READ_ONLY = "-c default_transaction_read_only=on"


def parse_database_url(url, variable="DATABASE_URL"):
    """Return a Django database settings dict for a PostgreSQL URL.

    A percent-encoded host starting with ``/`` is a Unix socket directory, as
    libpq understands it; several hosts are a comma list, each with its own
    port or none (``a,b:5433`` gives HOST ``a,b`` and PORT ``,5433``: an empty
    item is libpq's default port); query parameters (``sslmode=require``,
    ``target_session_attrs=read-write``) become OPTIONS. ``variable`` is the
    name errors give the URL.
    """
    if not url:
        raise ImproperlyConfigured(f"{variable} is not set: the QUIZ server needs a PostgreSQL database")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{variable} is not a valid URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ImproperlyConfigured(
            f"{variable} must start with postgres:// or postgresql://, not {parts.scheme or '(nothing)'}://"
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured(f"{variable} names no database (postgresql://user@host:port/DBNAME)")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts, ports = _hosts_and_ports(hostlist, variable)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(user),
        "PASSWORD": unquote(password),
        "HOST": ",".join(hosts),
        "PORT": ",".join(ports) if any(ports) else "",
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


def with_bounded_waits(options):
    """``options`` plus the BOUNDED_WAITS it does not set itself."""
    return {**BOUNDED_WAITS, **options}


def read_database(url):
    """Django's settings for DATABASE_READ_URL (alias READ_ALIAS), where reads go while there is no primary.

    Parsed like DATABASE_URL, with the same bounded waits and backend. Two
    things differ. Its connections are read-only at the server: the read URL
    reaches whichever member runs, the primary too, and a write that came this
    way by mistake is refused there (SQLSTATE 25006) rather than saved behind
    the router's back. And they are kept only briefly (CONN_MAX_AGE 30 s):
    during a failover every read of a thread needs one, and opening a new one
    for each (password exchange included) made the health checks late under
    load (measured: servers marked DOWN in a switchover); once the primary is
    back they close within half a minute rather than holding a slot per
    server thread on the standby. A test run mirrors it to the default
    database instead of creating one through it.
    """
    database = parse_database_url(url, "DATABASE_READ_URL")
    options = database["OPTIONS"]
    options["options"] = f"{options['options']} {READ_ONLY}" if options.get("options") else READ_ONLY
    database.update(ENGINE="quiz.postgres", OPTIONS=with_bounded_waits(options), CONN_MAX_AGE=30,
                    CONN_HEALTH_CHECKS=True, TEST={"MIRROR": "default"})
    return database


def _hosts_and_ports(hostlist, variable):
    """Split libpq's ``host[:port],host[:port]…`` into two lists of the same length.

    No host at all (``postgresql:///quiz``) is libpq's default, the local
    socket; but an empty item in a list (``a,,b``) is refused: libpq would
    quietly read it as the local socket too.
    """
    if not hostlist:
        return [], []
    hosts, ports = [], []
    for item in hostlist.split(","):
        if item.startswith("["):  # [IPv6]:port
            address, bracket, port = item[1:].partition("]")
            if not bracket or (port and not port.startswith(":")):
                raise ImproperlyConfigured(f"{variable} has a bad IPv6 host {item!r} (write [address]:port)")
            host, port = address, port[1:]
        else:
            host, _, port = item.partition(":")
        host = unquote(host)
        if not host:
            raise ImproperlyConfigured(
                f"{variable} has an empty host in {hostlist!r}: write host[:port],host[:port] with no empty item"
            )
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ImproperlyConfigured(f"{variable} has a bad port {port!r} for host {host!r}")
        hosts.append(host.lower() if not host.startswith("/") else host)
        ports.append(port)
    return hosts, ports
