"""QUIZ's request log: one line per request with the balancer's id, the user and the outcome."""

import logging

import pytest

from quiz.testing import login_as

pytestmark = pytest.mark.django_db


def lines(caplog):
    return [r for r in caplog.records if r.name == "quiz.request"]


def test_one_line_per_request_with_the_id_and_the_user(client, caplog):
    caplog.set_level(logging.INFO, logger="quiz.request")
    login_as(client, "pepe")
    caplog.clear()
    client.get("/quizzes?page=1", HTTP_X_REQUEST_ID="abc-123")
    (record,) = lines(caplog)
    text = record.getMessage()
    assert text.startswith("GET /quizzes?page=1 200 ") and text.endswith(" user=pepe")
    assert record.request_id == "abc-123"


def test_an_anonymous_miss_and_a_bad_id(client, caplog):
    caplog.set_level(logging.INFO, logger="quiz.request")
    client.get("/no-such-page", HTTP_X_REQUEST_ID="bad id\nwith a break")
    request_lines = lines(caplog)
    assert len(request_lines) == 1
    assert " 404 " in request_lines[0].getMessage()
    # Every line of the request (Django's own "Not Found" warning too) carries its id, here "-".
    assert {getattr(r, "request_id", None) for r in caplog.records} == {"-"}


def test_health_checks_are_not_logged(client, caplog):
    caplog.set_level(logging.INFO, logger="quiz.request")
    client.get("/healthz")
    assert lines(caplog) == []


def test_a_traceback_stays_on_one_line():
    from quiz.requestlog import OneLineFormatter

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None,
                                   exc_info=__import__("sys").exc_info())
    text = OneLineFormatter("%(message)s").format(record)
    assert "\n" not in text and "ValueError: boom" in text


def test_the_time_is_written_as_loggings_default_across_seconds():
    from quiz.requestlog import OneLineFormatter

    ours, default = OneLineFormatter("%(asctime)s %(message)s"), logging.Formatter("%(asctime)s %(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    for created in (1_800_000_000.0, 1_800_000_000.999, 1_800_000_001.0, 1_800_000_000.5, 1_800_003_600.25):
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert ours.format(record) == default.format(record)


def test_an_api_token_in_the_address_is_not_logged(client, caplog):
    from quiz.testing import user

    token = user("pepe").new_token()
    caplog.set_level(logging.INFO, logger="quiz.request")
    client.get(f"/api/quizzes?token={token}&pageno=1")
    client.get("/api/users/tokenOwner", {"TOKEN": "wrong-one"})
    client.get(f"/api/quizzes?pageno=2&tok%65n={token}")
    messages = [record.getMessage() for record in lines(caplog)]
    assert [message.split()[1] for message in messages] == [
        "/api/quizzes?token=<redacted>&pageno=1", "/api/users/tokenOwner?TOKEN=<redacted>",
        "/api/quizzes?pageno=2&tok%65n=<redacted>"]
    assert all(token not in message and "wrong-one" not in message for message in messages)


@pytest.mark.parametrize("full_path, logged", [
    ("/quizzes?search=token&pageno=1", "/quizzes?search=token&pageno=1"),
    ("/x?csrftoken=abc;api_token=def&once=0123", "/x?csrftoken=<redacted>;api_token=<redacted>&once=0123"),
    ("/x;token=abc/y?token", "/x;token=<redacted>/y?token"),
    ("/x?token=", "/x?token=<redacted>"),
])
def test_what_is_redacted(full_path, logged):
    from quiz.requestlog import redacted

    assert redacted(full_path) == logged
