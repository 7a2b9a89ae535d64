"""Turn a ``DATABASE_URL`` into Django's ``DATABASES`` entry.

Deployment hands every server one URL (``postgresql://user:pass@host:port/db``),
the common convention of twelve-factor apps. Parsing it here, with the standard
library, avoids a dependency for thirty lines, and lets us refuse anything that
is not PostgreSQL: the app is stateless only if every server shares one database.
"""

from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

SCHEMES = ("postgres", "postgresql")


def parse_database_url(url):
    """Return a Django database settings dict for a PostgreSQL URL.

    A percent-encoded host starting with ``/`` is a Unix socket directory, as
    libpq understands it; query parameters (``sslmode=require``) become OPTIONS.
    """
    if not url:
        raise ImproperlyConfigured("DATABASE_URL is not set: the QUIZ server needs a PostgreSQL database")
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL must start with postgres:// or postgresql://, not {parts.scheme or '(nothing)'}://"
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL names no database (postgresql://user@host:port/DBNAME)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL has a bad port: {exc}") from None
    host = unquote(parts.hostname or "") if "%" not in (parts.netloc or "") else unquote(parts.netloc.rsplit("@", 1)[-1].split(":")[0])
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port) if port else "",
        "OPTIONS": dict(parse_qsl(parts.query)),
    }
