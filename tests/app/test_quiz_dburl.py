"""DATABASE_URL parsing: what the operator writes becomes Django's database settings."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from quiz.dburl import parse_database_url


def test_a_full_url():
    db = parse_database_url("postgresql://quiz:s%40cret@10.2.4.31:5433/quiz?sslmode=require")
    assert db == {"ENGINE": "django.db.backends.postgresql", "NAME": "quiz", "USER": "quiz", "PASSWORD": "s@cret",
                  "HOST": "10.2.4.31", "PORT": "5433", "OPTIONS": {"sslmode": "require"}}


def test_postgres_scheme_and_defaults():
    db = parse_database_url("postgres://bbdd/quiz")
    assert (db["HOST"], db["PORT"], db["USER"], db["PASSWORD"]) == ("bbdd", "", "", "")


def test_a_unix_socket_directory():
    assert parse_database_url("postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/quiz")["HOST"] == "/var/run/postgresql"


@pytest.mark.parametrize("url", ["", "sqlite:///quiz.db", "mysql://h/db", "postgresql://host/", "postgresql://h:port/db"])
def test_refused(url):
    with pytest.raises(ImproperlyConfigured):
        parse_database_url(url)


def test_a_primary_and_its_standby():
    """The replicated database: libpq tries the hosts in turn and keeps the one that takes writes."""
    db = parse_database_url("postgresql://quiz:pw@10.2.4.31:5432,10.2.4.32:5432/quiz?target_session_attrs=read-write")
    assert (db["HOST"], db["PORT"]) == ("10.2.4.31,10.2.4.32", "5432,5432")
    assert (db["NAME"], db["USER"], db["PASSWORD"]) == ("quiz", "quiz", "pw")
    assert db["OPTIONS"] == {"target_session_attrs": "read-write"}


@pytest.mark.parametrize("hosts, host, port", [
    ("a,b:5433", "a,b", ",5433"),            # an empty item is libpq's default port
    ("a:5433,b", "a,b", "5433,"),
    ("a,b", "a,b", ""),                      # no port anywhere: one default for all
    ("DB1.example:5432,db2.example:6432", "db1.example,db2.example", "5432,6432"),
    ("[::1]:5432,[fe80::2]", "::1,fe80::2", "5432,"),
    ("%2Fvar%2Frun%2Fpostgresql,10.2.4.32:5433", "/var/run/postgresql,10.2.4.32", ",5433"),
])
def test_host_lists_with_and_without_ports(hosts, host, port):
    db = parse_database_url(f"postgresql://quiz@{hosts}/quiz")
    assert (db["HOST"], db["PORT"]) == (host, port)
    assert len(db["PORT"].split(",")) in (1, len(db["HOST"].split(",")))  # what libpq accepts


@pytest.mark.parametrize("url, says", [
    ("postgresql://quiz@a,,b/quiz", "empty host"),
    ("postgresql://quiz@a,/quiz", "empty host"),
    ("postgresql://quiz@,b/quiz", "empty host"),
    ("postgresql://quiz@a:5432,:5433/quiz", "empty host"),
    ("postgresql://quiz@a:5432,b:x/quiz", "bad port 'x' for host 'b'"),
    ("postgresql://quiz@a:70000,b/quiz", "bad port '70000'"),
    ("postgresql://quiz@a,[::1/quiz", "IPv6"),
    ("postgresql://quiz@a,[::1]x/quiz", "IPv6"),
])
def test_bad_host_lists_are_refused_clearly(url, says):
    with pytest.raises(ImproperlyConfigured, match=says.replace("[", r"\[")):
        parse_database_url(url)


def test_the_password_may_hold_the_separators():
    db = parse_database_url("postgresql://quiz:a:b%40c@10.2.4.31,10.2.4.32/quiz")
    assert (db["PASSWORD"], db["HOST"]) == ("a:b@c", "10.2.4.31,10.2.4.32")


def test_waits_are_bounded_unless_the_url_says_otherwise():
    from quiz.dburl import with_bounded_waits

    bounded = with_bounded_waits(parse_database_url("postgresql://h/quiz")["OPTIONS"])
    assert bounded == {"connect_timeout": 2, "keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1,
                       "keepalives_count": 3, "tcp_user_timeout": 3000}
    own = with_bounded_waits(parse_database_url("postgresql://h/quiz?connect_timeout=10&sslmode=require")["OPTIONS"])
    assert own["connect_timeout"] == "10" and own["sslmode"] == "require" and own["tcp_user_timeout"] == 3000


def test_the_server_gets_the_bounded_multi_host_settings_psycopg_accepts(settings):
    """What the settings hand psycopg is a conninfo libpq parses, hosts, ports and options included."""
    import psycopg
    from django.db import connections

    from quiz.dburl import with_bounded_waits

    db = parse_database_url("postgresql://quiz:pw@10.2.4.31:5432,10.2.4.32/quiz?target_session_attrs=read-write")
    db["OPTIONS"] = with_bounded_waits(db["OPTIONS"])
    wrapper = connections["default"]
    params = type(wrapper)({**wrapper.settings_dict, **db}).get_connection_params()
    info = psycopg.conninfo.conninfo_to_dict(psycopg.conninfo.make_conninfo(**{
        k: v for k, v in params.items() if k not in ("cursor_factory", "context", "prepare_threshold")}))
    assert (info["host"], info["port"], info["target_session_attrs"]) == ("10.2.4.31,10.2.4.32", "5432,",
                                                                          "read-write")
    assert (info["connect_timeout"], info["tcp_user_timeout"], info["keepalives"]) == ("2", "3000", "1")
    assert settings.DATABASES["default"]["ENGINE"] == "quiz.postgres"
    assert settings.DATABASES["default"]["OPTIONS"]["tcp_user_timeout"] == 3000
