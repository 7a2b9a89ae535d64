"""Settings of the QUIZ server, read from the environment and nowhere else.

Every server behind the load balancer gets the same environment, so every
server answers the same way: one PostgreSQL database (``DATABASE_URL``, no
default — a server that silently fell back to a local database would split the
users' data), one shared media root (``QUIZ_MEDIA_ROOT``), one secret key
(``DJANGO_SECRET_KEY``, also required: sessions and CSRF tokens signed by one
server must verify on the others). docs/app.md lists every variable.
"""

import ipaddress
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from quiz.dburl import READ_ALIAS, parse_database_url, read_database, with_bounded_waits


def _flag(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _list(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def _positive_int(name, default):
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) == 0:
        raise ImproperlyConfigured(f"{name} must be a positive whole number, not {value!r}")
    return int(value)


def _addresses(name):
    """A comma list of IP addresses or networks, checked now; None when unset or empty."""
    items = _list(name, [])
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network") from None
    return items or None


BASE_DIR = Path(__file__).resolve().parent

DEBUG = _flag("DJANGO_DEBUG")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: every server behind the load balancer needs the same secret key"
        )
    # A throwaway key is fine for one DEBUG process on a developer's machine.
    SECRET_KEY = secrets.token_urlsafe(50)

ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

DATABASES = {"default": parse_database_url(os.environ.get("DATABASE_URL", ""))}
# DATABASE_URL may list several hosts (a primary and its standby) with
# ?target_session_attrs=read-write: libpq tries them in turn and keeps the one
# that takes writes, so a new connection finds the primary after a failover.
#
# No request may hang on a database that does not answer. Unless the URL sets
# them itself, libpq gets (dburl.BOUNDED_WAITS):
# - connect_timeout=2: a host that never completes the connection is given up
#   after 2 s (per host: a list of two costs at most 4 s), not psycopg's 130 s;
# - tcp_user_timeout=3000: a query sent on an established connection to a host
#   gone silent (hung, or cut off: no TCP answer at all) fails once it has gone
#   unacknowledged for 3 s, instead of after the kernel's ~15 minutes of
#   retransmissions;
# - keepalives=1, keepalives_idle=2, keepalives_interval=1, keepalives_count=3:
#   an idle connection, or one waiting for a result, to a silent host is found
#   dead within ~5 s, so the next request does not start on it.
# A host whose kernel still answers but whose PostgreSQL does not is caught by
# QUIZ_DB_WAIT_LIMIT below (quiz.deadline).
DATABASES["default"]["OPTIONS"] = with_bounded_waits(DATABASES["default"]["OPTIONS"])
# Django's own backend, with psycopg connections whose waits can be bounded.
DATABASES["default"]["ENGINE"] = "quiz.postgres"
# Persistent connections: a gunicorn thread reuses its connection for
# QUIZ_CONN_MAX_AGE seconds; the health check (SELECT 1 before a request uses
# it) catches a restarted database. One to a server that became a standby
# passes that check: quiz.outage closes it at its first refused write.
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("QUIZ_CONN_MAX_AGE", "600"))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Seconds any one wait for the database may last while a request is answered
# (a query, a commit, the health check); past it the connection is cut and the
# request answered 503 "try again" (quiz.deadline, quiz.outage). QUIZ's queries
# take milliseconds; management commands are not bound. 1.5 s stays under the
# balancer's 2 s for a read or a replayable write, so the app answers first (a
# 503, or a read from the standby) and the balancer never gives up with a 504
# of its own while the database is hung or cut off.
QUIZ_DB_WAIT_LIMIT = float(os.environ.get("QUIZ_DB_WAIT_LIMIT", "1.5"))
# DATABASE_READ_URL (optional): any running member of the database, through
# the local router's second port. While there is no primary (a failover, a
# switchover) a GET or HEAD that met the database away is answered from it
# instead of a 503 (quiz.standby). Only reads go there: the router below sends
# every write and every migration to "default", and the connections are
# read-only at the server (dburl.read_database says why, and why they last
# one request). Without it, such a request is a 503 "try again".
_read_url = os.environ.get("DATABASE_READ_URL", "").strip()
if _read_url:
    DATABASES[READ_ALIAS] = read_database(_read_url)
DATABASE_ROUTERS = ["quiz.standby.StandbyRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

MEDIA_ROOT = os.environ.get("QUIZ_MEDIA_ROOT", str(Path.cwd() / "media"))
MEDIA_URL = "/uploads/"
UPLOAD_MAX_BYTES = 2 * 1024 * 1024
# The largest request body a server reads (quiz.bodylimit answers 413 past it,
# before Django reads a byte): an image of UPLOAD_MAX_BYTES and the form around
# it. Django's own limits are the same number, so a body that got in is kept
# in memory whole, never spooled to a temporary file.
QUIZ_MAX_BODY = _positive_int("QUIZ_MAX_BODY", UPLOAD_MAX_BYTES + 512 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = QUIZ_MAX_BODY
DATA_UPLOAD_MAX_MEMORY_SIZE = QUIZ_MAX_BODY

QUIZ_OPEN_REGISTER = _flag("QUIZ_OPEN_REGISTER")
# The seed (quiz.seed): the administrator's password as a Django hash made by
# the deployment (never the password itself), and whether the original's demo
# users with their well-known passwords (admin/1234, pepe/5678) are wanted.
QUIZ_ADMIN_PASSWORD_HASH = os.environ.get("QUIZ_ADMIN_PASSWORD_HASH", "").strip()
QUIZ_DEMO_USERS = _flag("QUIZ_DEMO_USERS")
# Who is told why /healthz fails (quiz.middleware): requests without
# X-Forwarded-For from these addresses or networks (comma list). Unset or
# empty: any request without X-Forwarded-For, as on a developer's machine.
QUIZ_HEALTH_DETAIL_FROM = _addresses("QUIZ_HEALTH_DETAIL_FROM")
QUIZ_IDLE_LOGOUT_SECONDS = 5 * 60
QUIZ_PAGE_SIZE = 10
QUIZ_MAX_TIPS_PER_QUIZ = 50
QUIZ_MAX_QUIZZES_PER_DAY = 50

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "quiz",
]

# Kept short on purpose: every middleware runs on every request (see
# docs/performance.md). /healthz is answered by the first one, before sessions;
# DatabaseOutageMiddleware turns a database failure while loading the session
# and the user, or in a view, into a 503 "try again".
MIDDLEWARE = [
    "quiz.middleware.HealthzMiddleware",
    # One line per request (not the health checks), with the balancer's request id.
    "quiz.requestlog.RequestLogMiddleware",
    # Validates the Host header on every request (request.get_host(): an unknown
    # host is a 400), and gives every answer its Content-Length, so gunicorn
    # sends it without chunked framing.
    "django.middleware.common.CommonMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "quiz.outage.DatabaseOutageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "quiz.middleware.IdleLogoutMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "quiz.urls"
WSGI_APPLICATION = "quiz.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        # With DEBUG off Django wraps these loaders in the cached loader.
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
    {
        # The busiest pages (the list, a quiz, playing it) render with Jinja2, from
        # quiz/jinja2/: the same HTML at a fraction of the CPU (quiz.jinja,
        # docs/performance.md). Compiled once per process (no auto_reload unless DEBUG).
        "NAME": "jinja2",
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "environment": "quiz.jinja.environment",
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_USER_MODEL = "quiz.User"
LOGIN_URL = "/session"
# Checked where a person chooses a password (sign-up, password change: quiz.views.users);
# the seed's demo users are made directly and keep the original's passwords.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
     "OPTIONS": {"user_attributes": ["username"]}},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = _list(
    "QUIZ_PASSWORD_HASHERS",
    ["django.contrib.auth.hashers.PBKDF2PasswordHasher"],
)

# Sessions live in the database so any server can continue any session.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = _flag("QUIZ_SECURE_COOKIES")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Flash messages travel in a signed cookie: no session needed to show an error.
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"

# Only the load balancer can reach the servers (the firewall drops the rest),
# so its X-Forwarded-Proto is trusted to say whether the client used HTTPS.
# The Host header is the client's own; X-Forwarded-Host is ignored.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line names the request it belongs to ([id], "-" outside a
    # request) and stays one line (quiz.requestlog).
    "filters": {"request_id": {"()": "quiz.requestlog.RequestIdFilter"}},
    "formatters": {
        "plain": {"()": "quiz.requestlog.OneLineFormatter",
                  "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "syslog": {"()": "quiz.requestlog.OneLineFormatter",
                   "format": "quiz[%(process)d]: %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "plain",
                   "filters": ["request_id"]},
    },
    "root": {"handlers": ["stdout"], "level": os.environ.get("QUIZ_LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
    },
}

_syslog = os.environ.get("QUIZ_SYSLOG", "").strip()
if _syslog:
    _host, _, _port = _syslog.rpartition(":")
    if not _host or not _port.isdigit():
        raise ImproperlyConfigured(f"QUIZ_SYSLOG must be host:port, not {_syslog!r}")
    LOGGING["handlers"]["syslog"] = {
        "class": "logging.handlers.SysLogHandler",
        "address": (_host.strip("[]"), int(_port)),  # a tuple means UDP
        "facility": "local0",
        "formatter": "syslog",
        "filters": ["request_id"],
    }
    LOGGING["root"]["handlers"].append("syslog")
