"""One log line per request, and the request's id on every line it causes.

The load balancer names each request (X-Request-ID, docs/operations.md "Logs");
RequestLogMiddleware keeps that id for the request's thread while it is
answered, so every line logged meanwhile — Django's own errors with their
traceback included — carries it, and ends with one line saying what was
asked, by whom, how it ended and how long it took:

    2026-11-27 12:00:00,123 INFO quiz.request [3f2c…] GET /quizzes 200 12.4ms user=admin

Only the load balancers reach the servers, so the header is theirs; it is
still checked for shape, since it ends up in files operators read. Lines
stay single lines (OneLineFormatter): the logs travel line by line to the
logs host, and a traceback cut in pieces would lose its id.

An API token in the address (``?token=…``, the JSON API's credential) is
written ``token=<redacted>``: the logs are read by more people, and kept
longer, than any token should be.
"""

import contextvars
import logging
import re
import time
from urllib.parse import unquote_plus

from django.utils.functional import empty

# A line is logged for every request, so a record gathers only what a format
# here can show (the logging HOWTO's "Optimization"): not the calling frame
# (file, line, function) nor the thread's and multiprocessing's names. The
# process id stays: the syslog lines carry it.
logging._srcfile = None
logging.logThreads = False
logging.logMultiprocessing = False

request_id = contextvars.ContextVar("quiz_request_id", default="-")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
logger = logging.getLogger("quiz.request")
REDACTED = "<redacted>"
# A "token=" in the path itself (";token=…", "/token=…"): the query is taken apart below.
PATH_TOKEN = re.compile(r"(token=)[^/;&?]*", re.IGNORECASE)


def _redacted_pair(pair):
    # The name as Django reads it: "tok%65n" is "token" to QueryDict, so it is one here too.
    name, equals, _ = pair.partition("=")
    if equals and unquote_plus(name).lower().endswith("token"):
        return name + "=" + REDACTED
    return pair


def redacted(full_path):
    """``full_path`` (path and query) with the value of every ``…token=`` parameter replaced by <redacted>."""
    if "%" not in full_path and "token" not in full_path.lower():
        return full_path  # the busiest pages: nothing to take apart
    path, question, query = full_path.partition("?")
    path = PATH_TOKEN.sub(r"\1" + REDACTED, path)
    if not question:
        return path
    return path + "?" + "".join(_redacted_pair(part) for part in re.split(r"([&;])", query))


class RequestIdFilter(logging.Filter):
    """Gives every record the id of the request being answered ("-" outside one)."""

    def filter(self, record):
        record.request_id = request_id.get()
        return True


class OneLineFormatter(logging.Formatter):
    """A record on one line: a traceback's line breaks become " | ".

    The time is written as logging's default writes it; the part up to the
    second is made once a second, not once a line.
    """

    _second = (None, "")  # (the second, its text)

    def format(self, record):
        return super().format(record).replace("\r", "").replace("\n", " | ")

    def formatTime(self, record, datefmt=None):
        if datefmt:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached, text = self._second
        if cached != second:
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return self.default_msec_format % (text, record.msecs)


def _user(request):
    # The user is looked up only if the request already did (no query of ours).
    user = getattr(request, "user", None)
    wrapped = getattr(user, "_wrapped", user)
    if wrapped is None or wrapped is empty:
        return "-"
    return getattr(wrapped, "username", "") or "-"


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        token = request_id.set(given if REQUEST_ID.match(given) else "-")
        started = time.perf_counter()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            took = (time.perf_counter() - started) * 1000
            path = redacted(request.get_full_path())[:300].replace(" ", "%20")
            logger.info("%s %s %s %.1fms user=%s", request.method, path, status, took,
                        _user(request))
            request_id.reset(token)
