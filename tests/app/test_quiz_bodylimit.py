"""Request bodies over QUIZ_MAX_BODY are refused with 413 before anything reads past the limit.

The WSGI layer (quiz.bodylimit) is called as gunicorn calls it, with a
``wsgi.input`` that counts what is read from it: a body announced too large
is not read at all, a chunked one no further than just past the limit.
"""

import io
import re

import pytest
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from quiz.anonymous import Application
from quiz.bodylimit import PIECE, BodyLimit
from quiz.testing import wsgi_call

LIMIT = 1000


class CountingInput:
    """A request body of ``size`` bytes (endless if None) that counts the bytes read from it."""

    def __init__(self, size=None, content=b"x"):
        self.left = size
        self.content = content
        self.read_bytes = 0

    def read(self, size=-1):
        size = PIECE if size is None or size < 0 else size
        if self.left is not None:
            size = min(size, self.left)
            self.left -= size
        self.read_bytes += size
        return (self.content * (size // len(self.content) + 1))[:size]


class Inner:
    """A stand-in application that reads the whole body, as Django would, and says how much it got."""

    def __init__(self):
        self.called = 0

    def __call__(self, environ, start_response):
        self.called += 1
        length = environ.get("CONTENT_LENGTH", "")
        length = int(length) if length.isdigit() else 0  # Django's reading of a malformed one
        body = environ["wsgi.input"].read(length)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got %d" % len(body)]


def post(app, body, **headers):
    return wsgi_call(app, "/quizzes", "POST", **{"wsgi.input": body, **headers})


def test_a_body_announced_too_large_is_413_at_once_and_not_read():
    inner, body = Inner(), CountingInput()
    status, headers, answer = post(BodyLimit(inner, LIMIT), body, CONTENT_LENGTH=str(LIMIT + 1))
    assert status == "413 Payload Too Large" and answer == b"Request body too large.\n"
    assert headers["Content-Length"] == str(len(answer)) and headers["Content-Type"].startswith("text/plain")
    assert body.read_bytes == 0 and inner.called == 0


def test_a_body_within_the_limit_goes_on_untouched():
    inner, body = Inner(), CountingInput(LIMIT)
    status, _, answer = post(BodyLimit(inner, LIMIT), body, CONTENT_LENGTH=str(LIMIT))
    assert status == "200 OK" and answer == b"got 1000" and body.read_bytes == LIMIT


def test_an_endless_chunked_body_is_413_just_past_the_limit():
    inner, body = Inner(), CountingInput(size=None)
    status, _, _ = post(BodyLimit(inner, LIMIT), body, HTTP_TRANSFER_ENCODING="chunked")
    assert status == "413 Payload Too Large" and inner.called == 0
    assert body.read_bytes == LIMIT + 1


def test_a_large_chunked_body_is_read_no_further_than_one_byte_past_the_limit():
    limit = settings.QUIZ_MAX_BODY
    body = CountingInput(size=100 * limit)
    status, _, _ = post(BodyLimit(Inner(), limit), body, HTTP_TRANSFER_ENCODING="chunked")
    assert status.startswith("413 ") and body.read_bytes == limit + 1


def test_a_chunked_body_within_the_limit_reaches_the_application_with_its_length():
    inner, body = Inner(), CountingInput(size=LIMIT)
    status, _, answer = post(BodyLimit(inner, LIMIT), body, HTTP_TRANSFER_ENCODING="chunked")
    assert status == "200 OK" and answer == b"got 1000"


def test_no_body_and_a_malformed_length_are_left_to_the_application():
    inner = Inner()
    assert post(BodyLimit(inner, LIMIT), io.BytesIO())[0] == "200 OK"
    assert post(BodyLimit(inner, LIMIT), io.BytesIO(), CONTENT_LENGTH="12abc")[0] == "200 OK"
    assert inner.called == 2


def test_the_refusal_has_its_request_log_line(caplog):
    caplog.set_level("INFO", logger="quiz.request")
    post(BodyLimit(Inner(), LIMIT), CountingInput(), CONTENT_LENGTH="5000000", HTTP_X_REQUEST_ID="req-7")
    (record,) = [r for r in caplog.records if r.name == "quiz.request"]
    assert record.getMessage() == "POST /quizzes 413 body over 1000 bytes" and record.request_id == "req-7"


def test_djangos_limits_are_the_same_one_number():
    assert settings.QUIZ_MAX_BODY == settings.UPLOAD_MAX_BYTES + 512 * 1024
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.FILE_UPLOAD_MAX_MEMORY_SIZE == settings.QUIZ_MAX_BODY


# -- around the real application ----------------------------------------------------------------


@pytest.fixture
def app(db):
    """What gunicorn serves, on the test's own database connection (see test_anonymous_reads.py)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield BodyLimit(Application(), settings.QUIZ_MAX_BODY)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_a_chunked_login_works_as_one_with_a_length(app):
    plain_http = {"HTTP_X_FORWARDED_PROTO": "http"}  # no Referer check: CSRF by cookie and token only
    _, headers, page = wsgi_call(app, "/session", **plain_http)
    cookie = headers["Set-Cookie"].split(";")[0]
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = b"login=pepe&password=5678&redir=%2Fquizzes&csrfmiddlewaretoken=" + token
    status, headers, _ = wsgi_call(app, "/session", "POST", **{
        "wsgi.input": io.BytesIO(form), "HTTP_TRANSFER_ENCODING": "chunked", "HTTP_COOKIE": cookie,
        "CONTENT_TYPE": "application/x-www-form-urlencoded", **plain_http})
    assert status.startswith("302 ") and headers["Location"] == "/quizzes"


def test_an_upload_too_large_for_the_form_is_413_before_django(app):
    body = CountingInput()
    status, _, _ = wsgi_call(app, "/quizzes", "POST", **{
        "wsgi.input": body, "CONTENT_LENGTH": str(settings.QUIZ_MAX_BODY + 1),
        "CONTENT_TYPE": "multipart/form-data; boundary=x"})
    assert status.startswith("413 ") and body.read_bytes == 0
