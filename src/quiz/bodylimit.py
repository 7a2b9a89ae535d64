"""A bound on request bodies, enforced before the application reads any of them.

Nothing in QUIZ needs a body larger than an image of the upload limit and
the form around it (settings.QUIZ_MAX_BODY). A larger one would only cost
the server memory, disk and time, so it is answered ``413 Payload Too
Large`` as it arrives, by this WSGI layer around the application
(quiz.wsgi), before Django or any middleware looks at it:

- with ``Content-Length`` above the limit, at once, reading no byte of it;
- with ``Transfer-Encoding: chunked`` (no length known in advance), read
  here in pieces and refused as soon as it passes the limit; a body within
  it is handed on in memory with its length, as if it had come with one
  (Django reads no chunked body otherwise).

Django's own memory limits are the same number (settings.py), so a body let
through is kept in memory whole and never spooled to a temporary file.
"""

import io
import logging

from quiz.requestlog import REQUEST_ID, request_id

log = logging.getLogger("quiz.request")

PIECE = 64 * 1024  # bytes read at a time from a chunked body
BODY = b"Request body too large.\n"


def declared_length(environ):
    """The Content-Length as a number, or None when there is none (a malformed one is Django's to refuse)."""
    value = environ.get("CONTENT_LENGTH", "").strip()
    return int(value) if value.isdigit() else None


def is_chunked(environ):
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def read_within(stream, limit):
    """The whole of ``stream`` if it holds at most ``limit`` bytes, else None, having read just past the limit."""
    pieces, size = [], 0
    while size <= limit:
        piece = stream.read(min(PIECE, limit + 1 - size))
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)
        size += len(piece)
    return None


class BodyLimit:
    """WSGI middleware: 413 for a body over ``limit`` bytes, known by its length or found while reading it."""

    def __init__(self, app, limit):
        self.app = app
        self.limit = limit

    def __call__(self, environ, start_response):
        length = declared_length(environ)
        if length is not None:
            if length > self.limit:
                return self.refuse(environ, start_response)
        elif is_chunked(environ):
            body = read_within(environ["wsgi.input"], self.limit)
            if body is None:
                return self.refuse(environ, start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    def refuse(self, environ, start_response):
        self.log(environ)
        # No "Connection: close": WSGI leaves connections to the server (gunicorn), which drops the header.
        start_response("413 Payload Too Large", [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(BODY))),
            ("Cache-Control", "no-store"),
        ])
        return [BODY]

    def log(self, environ):
        """The request log's line for it (quiz.requestlog), which Django's stack will not write."""
        given = environ.get("HTTP_X_REQUEST_ID", "")
        token = request_id.set(given if REQUEST_ID.match(given) else "-")
        try:
            log.info("%s %s 413 body over %d bytes", environ.get("REQUEST_METHOD", "-"),
                     environ.get("PATH_INFO", "")[:300].replace(" ", "%20"), self.limit)
        finally:
            request_id.reset(token)
