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
