"""A browser's view of QUIZ for the chaos load: connections, cookies, what an answer meant.

The load generator (load.py) must see the service as a person's browser
does, or its figures would measure the generator instead of the fault. So
this module keeps connections alive and retries only where browsers do (a
request that met a kept-alive connection the server had just closed, before
a single byte came back), bounds every request by one deadline, keeps cookies per
person, reads the flash message a redirect carries, and decides whether an
answer is the one the user wanted. Standard library only: it runs inside the
client hosts.
"""

import base64
import http.client
import http.cookies
import json
import re
import socket
import time
import urllib.parse
import zlib
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from quizstack.webforms import csrf_token, form_action

TIMEOUT = 10.0
ERROR_LEVEL = 40      # Django's level of error messages


# -- HTTP like a browser: one keep-alive connection, one careful retry ---------------------

class Reply(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class Outcome(NamedTuple):
    reply: Reply | None
    error: str | None
    retried: bool


class _Unanswered(Exception):
    """The peer closed or reset the connection before sending a single byte back."""


def describe(exc):
    """A short text for a failed exchange."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    text = str(exc) or type(exc).__name__
    return text[:80]


class Connection:
    """A browser's connection to one host: kept alive, opened again when it closes.

    A request that fails on a reused connection before any byte of the
    answer arrived is sent once more on a fresh one: the server may have
    closed the idle connection as the request left. Browsers do this for
    every method, a form's POST included (Chromium resends any request on a
    reused connection that died before the response headers; curl does the
    same), which is why QUIZ's creation forms carry a one-time token.
    Nothing else is retried: a fresh connection's failure, a timeout or a
    half answer is what the user saw.
    """

    def __init__(self, base, timeout=TIMEOUT):
        parts = urllib.parse.urlsplit(base)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not an http://host[:port] URL: {base}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self.conn = None
        self.served = 0  # answers on the current connection

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def send(self, method, path, body=None, headers=None):
        reused = self.conn is not None and self.served > 0
        try:
            return Outcome(self._exchange(method, path, body, headers or {}), None, False)
        except _Unanswered as exc:
            if not reused:
                return Outcome(None, str(exc), False)
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(None, describe(exc), False)
        try:
            return Outcome(self._exchange(method, path, body, headers or {}), None, True)
        except (_Unanswered, OSError, http.client.HTTPException) as exc:
            return Outcome(None, describe(exc), True)

    def _exchange(self, method, path, body, headers):
        deadline = time.monotonic() + self.timeout
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.served = 0
        try:
            try:
                self.conn.request(method, path, body, headers)
            except TimeoutError:
                raise
            except (OSError, http.client.HTTPException) as exc:
                raise _Unanswered(describe(exc)) from None
            sock = self.conn.sock
            self._first_byte(sock, deadline)
            response = self.conn.getresponse()
            data = self._read(response, sock, deadline)
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        else:
            self.served += 1
        return Reply(response.status, response.headers, data)

    @staticmethod
    def _first_byte(sock, deadline):
        """Wait for the answer to begin; tell an unanswered request from a slow one."""
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            raise
        except OSError as exc:
            raise _Unanswered(describe(exc)) from None
        if not first:
            raise _Unanswered("closed before answering")

    @staticmethod
    def _read(response, sock, deadline):
        """The whole body, within the request's deadline (a trickle times out too)."""
        chunks = []
        while not response.isclosed():  # closed once the whole body is read
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(remaining)
            chunk = response.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
        if response.length:  # the server closed before the end of the body it announced
            raise http.client.IncompleteRead(b"".join(chunks), response.length)
        return b"".join(chunks)


# -- one person's browser state -----------------------------------------------------------

class Visitor:
    """Cookies (one site: a flat name → value map) and, for a user, who they are.

    Django's ``messages`` cookie is read from the answer that sets it (see
    `flash`) and not kept: we never load the page it is meant for, and kept
    messages would pile up into every later answer.
    """

    def __init__(self, username=None, password=None):
        self.username, self.password = username, password
        self.cookies = {}
        self.last_used = time.monotonic()
        self.quizzes = 0  # created (or tried) by this user in this run

    def cookie_header(self):
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def take_cookies(self, headers):
        for name, morsel in set_cookies(headers):
            if name == "messages":
                continue
            if _expired(morsel):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value


def set_cookies(headers):
    """(name, morsel) for each cookie an answer sets; unparsable ones are skipped."""
    for line in headers.get_all("Set-Cookie") or ():
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(line)
        except http.cookies.CookieError:
            continue
        yield from jar.items()


def _expired(morsel):
    """Django deletes a cookie with Max-Age=0 and an expiry in 1970."""
    try:
        if morsel["max-age"]:
            return int(morsel["max-age"]) <= 0
        if morsel["expires"]:
            return parsedate_to_datetime(morsel["expires"]).timestamp() <= time.time()
    except (TypeError, ValueError):
        pass
    return False


def flash(headers):
    """The messages an answer leaves for the next page: [(level, text)], best effort.

    Django's cookie storage holds them as ``payload:timestamp:signature``,
    the payload URL-safe base64 of JSON, zlib-compressed when it starts with
    a dot. We read what the user would read; we cannot and need not check
    the signature. Anything unreadable gives no messages.
    """
    found = []
    for name, morsel in set_cookies(headers):
        if name == "messages" and morsel.value:
            found += decode_messages(morsel.value)
    return found


def decode_messages(value):
    payload = value.split(":", 1)[0]
    compressed = payload.startswith(".")
    payload = payload.lstrip(".")
    try:
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        items = json.loads(zlib.decompress(data) if compressed else data)
    except (ValueError, zlib.error):
        return []
    if not isinstance(items, list):
        return []
    return [(item[2], str(item[3])) for item in items
            if isinstance(item, list) and len(item) >= 4 and item[0] == "__json_message"
            and isinstance(item[2], int)]


# -- what counts as the answer a user wanted ----------------------------------------------

def page_ok(reply):
    return None if 200 <= reply.status < 300 else f"HTTP {reply.status}"


def form_to(path):
    """A form page came: the page holds a form that posts to ``path``, with its CSRF token."""
    def check(reply):
        found = csrf_token(reply.body) and form_action(reply.body, path)
        return page_ok(reply) or (None if found else "no form on the page")
    return check


def location(reply):
    """The path (and query) a redirect points to; '' when none."""
    parts = urllib.parse.urlsplit(reply.headers.get("Location", ""))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def redirect_to(pattern):
    """A POST went well: redirected to ``pattern`` (a full match) with no error message."""
    def check(reply):
        if reply.status not in (302, 303):
            return f"HTTP {reply.status}"
        target = location(reply)
        if not re.fullmatch(pattern, target):
            return f"redirected to {target[:60]}"
        errors = [text for level, text in flash(reply.headers) if level >= ERROR_LEVEL]
        return errors[0][:80] if errors else None
    return check
