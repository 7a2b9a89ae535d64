"""A QUIZ user, scripted: runs inside a client host and prints JSON.

The checks run this module *inside* c1 (with the lab's Python), so every
request really crosses the firewall and the load balancer the way a person's
browser would. Only the standard library is used: the point is to speak plain
HTTP as the service's clients do, cookies and CSRF tokens included.

    python -m quizstack.check.client balance URL COUNT
    python -m quizstack.check.client upload URL USER PASSWORD FETCHES
    python -m quizstack.check.client delete URL USER PASSWORD QUIZ_ID
"""

import http.cookiejar
import json
import re
import secrets
import sys
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

    def login(self, user, password):
        status, headers, _ = self.post_form("/session", "/session",
                                            {"login": user, "password": password, "redir": "/"})
        if status not in (302, 303) or headers.get("Location", "").endswith("/session"):
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


def upload(base, user, password, fetches):
    """Create a quiz with an image through the service, then fetch the image repeatedly."""
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
    servers, same = {}, 0
    for _ in range(fetches):
        status, headers, body = browser.request(f"/uploads/{name}")
        key = headers.get("X-Server", "?") if status == 200 else f"HTTP {status}"
        servers[key] = servers.get(key, 0) + 1
        same += body == image
    return {"quiz": quiz_id, "question": marker, "image": name, "servers": servers,
            "identical": same, "fetches": fetches}


def delete(base, user, password, quiz_id):
    browser = Browser(base)
    browser.login(user, password)
    status, _, _ = browser.post_form(f"/quizzes/{quiz_id}", f"/quizzes/{quiz_id}/edit",
                                     {"_method": "DELETE"})
    return {"deleted": status in (302, 303), "status": status}


def main(argv):
    command, base, *rest = argv
    if command == "balance":
        result = balance(base, int(rest[0]))
    elif command == "upload":
        result = upload(base, rest[0], rest[1], int(rest[2]))
    elif command == "delete":
        result = delete(base, rest[0], rest[1], int(rest[2]))
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
