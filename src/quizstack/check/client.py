"""A QUIZ user, scripted: runs inside a client host and prints JSON.

The checks run this module *inside* c1 (with the lab's Python), so every
request really crosses the firewall and the load balancer the way a person's
browser would. Only the standard library is used: the point is to speak plain
HTTP as the service's clients do, cookies and CSRF tokens included.

    python -m quizstack.check.client balance URL COUNT
    python -m quizstack.check.client upload URL USER FETCHES [SERVERS]
    python -m quizstack.check.client delete URL USER QUIZ_ID
    python -m quizstack.check.client seed-logins URL
    python -m quizstack.check.client flood URL COUNT USER
    python -m quizstack.check.client login URL USER
    python -m quizstack.check.client oversize URL BYTES CHUNKED_BYTES

USER's password comes in the environment (QUIZSTACK_PASSWORD), never on the
command line, where any process of the host could read it.
"""

import http.cookiejar
import json
import os
import re
import secrets
import select
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from quizstack.webforms import csrf_token, multipart, png

TIMEOUT = 10


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """Cookies, CSRF tokens and the answering server of each response."""

    def __init__(self, base):
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())

    def request(self, path, data=None, headers=None):
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=TIMEOUT) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def csrf(self, path):
        status, _, body = self.request(path)
        token = csrf_token(body)
        if status != 200 or not token:
            raise SystemExit(f"no form with a CSRF token at {path} (HTTP {status})")
        return token

    def post_form(self, path, form_path, fields):
        fields = dict(fields, csrfmiddlewaretoken=self.csrf(form_path))
        data = urllib.parse.urlencode(fields).encode()
        return self.request(path, data, {"Content-Type": "application/x-www-form-urlencoded",
                                         "Referer": self.base + form_path})

    def post_multipart(self, path, form_path, fields, files):
        fields = dict(fields, csrfmiddlewaretoken=self.csrf(form_path))
        body, content_type = multipart(fields, files)
        return self.request(path, body, {"Content-Type": content_type,
                                         "Referer": self.base + form_path})

    def try_login(self, user, password, token=None):
        """(HTTP status, headers, logged in?) of one login; `token`: a CSRF token already had."""
        fields = {"login": user, "password": password, "redir": "/"}
        if token:
            data = urllib.parse.urlencode(dict(fields, csrfmiddlewaretoken=token)).encode()
            status, headers, _ = self.request("/session", data, {
                "Content-Type": "application/x-www-form-urlencoded", "Referer": self.base + "/session"})
        else:
            status, headers, _ = self.post_form("/session", "/session", fields)
        done = status in (302, 303) and not headers.get("Location", "").endswith("/session")
        return status, headers, done

    def login(self, user, password):
        status, _, done = self.try_login(user, password)
        if not done:
            raise SystemExit(f"cannot log in as {user} (HTTP {status})")


def balance(base, count):
    """GET / `count` times, each on a new connection; count who answered."""
    servers, statuses = {}, {}
    browser = Browser(base)
    for _ in range(count):
        status, headers, _ = browser.request("/quizzes")
        statuses[status] = statuses.get(status, 0) + 1
        server = headers.get("X-Server", "?")
        servers[server] = servers.get(server, 0) + 1
    return {"servers": servers, "statuses": statuses}


SLOWSTART_BUDGET = 12.0   # seconds: a server just back ramps up over 10 s (render.SLOWSTART)


def upload(base, user, password, fetches, servers=0):
    """Create a quiz with an image through the service, then fetch the image repeatedly:
    `fetches` times, and on while fewer than `servers` distinct servers have answered
    (for SLOWSTART_BUDGET seconds at most: with leastconn a server in its slow start
    gets no request while the others are idle)."""
    browser = Browser(base)
    browser.login(user, password)
    marker = "quizstack check " + secrets.token_hex(6)
    image = png(rgb=(secrets.randbelow(256), 90, 160))
    status, headers, _ = browser.post_multipart(
        "/quizzes", "/quizzes/new", {"question": marker, "answer": "yes"},
        {"image": ("check.png", image, "image/png")})
    match = re.search(r"/quizzes/(\d+)", headers.get("Location", "") if headers else "")
    if status not in (302, 303) or not match:
        raise SystemExit(f"creating a quiz with an image failed (HTTP {status})")
    quiz_id = int(match.group(1))
    status, _, page = browser.request(f"/quizzes/{quiz_id}")
    found = re.search(rb'/uploads/([0-9a-f]+\.png)', page)
    if status != 200 or not found:
        raise SystemExit(f"quiz {quiz_id} shows no image (HTTP {status})")
    name = found.group(1).decode()
    wanted, seen, same, done = servers, {}, 0, 0
    deadline = time.monotonic() + SLOWSTART_BUDGET
    while done < fetches or (len(seen) < wanted and time.monotonic() < deadline):
        if done >= fetches:
            time.sleep(0.2)
        status, headers, body = browser.request(f"/uploads/{name}")
        key = headers.get("X-Server", "?") if status == 200 else f"HTTP {status}"
        seen[key] = seen.get(key, 0) + 1
        same += body == image
        done += 1
    return {"quiz": quiz_id, "question": marker, "image": name, "servers": seen,
            "identical": same, "fetches": done}


def delete(base, user, password, quiz_id):
    browser = Browser(base)
    browser.login(user, password)
    status, _, _ = browser.post_form(f"/quizzes/{quiz_id}", f"/quizzes/{quiz_id}/edit",
                                     {"_method": "DELETE"})
    return {"deleted": status in (302, 303), "status": status}


# The seed's published accounts: a service facing clients must refuse them.
SEED_LOGINS = (("admin", "1234"), ("pepe", "5678"))


def seed_logins(base):
    """Try the seed's published passwords: {user: HTTP status and whether it logged in}."""
    found = {}
    for user, password in SEED_LOGINS:
        status, _, done = Browser(base).try_login(user, password)
        found[user] = {"status": status, "logged_in": done}
    return found


FLOOD_THREADS = 8


def flood(base, count, user, password):
    """`count` wrong passwords for a made-up account, FLOOD_THREADS at a time, then
    one right login as `user` from the same address: who answered what.

    An answer with X-Server came from a server (the app checked the password,
    or its own per-account back-off refused it); one without, from the balancer.
    """
    import threading

    browser = Browser(base)
    token = browser.csrf("/session")
    target = "flood" + secrets.token_hex(4)
    counts, retry_after, lock = {}, set(), threading.Lock()
    left = iter(range(count))

    def guess():
        while True:
            with lock:
                if next(left, None) is None:
                    return
            try:
                status, headers, _ = browser.try_login(target, secrets.token_hex(8), token)
                key = f"{'server' if headers.get('X-Server') else 'balancer'} {status}"
            except OSError:
                key, headers, status = "no answer", {}, 0
            with lock:
                counts[key] = counts.get(key, 0) + 1
                if status == 429 and headers.get("Retry-After"):
                    retry_after.add(headers["Retry-After"])

    started = time.monotonic()
    threads = [threading.Thread(target=guess) for _ in range(FLOOD_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    status, headers, done = Browser(base).try_login(user, password)
    return {"answers": counts, "retry_after": sorted(retry_after), "seconds": round(seconds, 2),
            "then": {"status": status, "logged_in": done,
                     "by": "server" if headers.get("X-Server") else "balancer"}}


def login(base, user, password):
    """One right login: HTTP status and whether it logged in."""
    status, headers, done = Browser(base).try_login(user, password)
    return {"status": status, "logged_in": done,
            "by": "server" if headers.get("X-Server") else "balancer"}


def oversize(base, size, chunked=False, budget=5.0):
    """Send a body of `size` bytes to POST /quizzes and stop at the first answer:
    (status, seconds to it, bytes sent, whether a server answered)."""
    parts = urllib.parse.urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=budget)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    sock.sendall((f"POST /quizzes HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                  f"Content-Type: application/octet-stream\r\n{length}\r\n\r\n").encode())
    piece, sent, answer = b"\0" * 65536, 0, b""
    started = time.monotonic()
    try:
        while time.monotonic() - started < budget and b"\r\n\r\n" not in answer:
            readable, writable, _ = select.select([sock], [sock] if sent < size else [], [], 0.5)
            if readable:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
            elif writable:
                chunk = piece[:size - sent]
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                sent += len(chunk)
    except OSError:
        pass   # the other side closed while we were sending: its answer may be read below
    try:
        sock.settimeout(1)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except OSError:
        pass
    seconds = time.monotonic() - started
    sock.close()
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status = int(head.split()[1]) if head.startswith("HTTP/") and len(head.split()) > 1 else 0
    return {"status": status, "seconds": round(seconds, 2), "sent": sent,
            "server": "x-server:" in head.lower()}


def main(argv):
    command, base, *rest = argv
    password = os.environ.get("QUIZSTACK_PASSWORD", "")
    if command == "balance":
        result = balance(base, int(rest[0]))
    elif command == "upload":
        result = upload(base, rest[0], password, int(rest[1]), int(rest[2]) if rest[2:] else 0)
    elif command == "delete":
        result = delete(base, rest[0], password, int(rest[1]))
    elif command == "seed-logins":
        result = seed_logins(base)
    elif command == "flood":
        result = flood(base, int(rest[0]), rest[1], password)
    elif command == "login":
        result = login(base, rest[0], password)
    elif command == "oversize":
        # A server that refuses a body half read closes with the rest unread; the
        # reset that follows can wipe its answer on our side before it is read:
        # up to three tries, each said.
        tries = []
        while len(tries) < 3 and (not tries or tries[-1]["status"] == 0):
            tries.append(oversize(base, int(rest[1]), chunked=True))
        result = {"length": oversize(base, int(rest[0])), "chunked": dict(tries[-1], tries=len(tries))}
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
