"""The load generator's parts that decide what a user saw: the one retry browsers make,
timeouts, the schedule that never bursts, cookies and flash messages, the images
(chaos/load.py and the browser it is built on, chaos/browser.py)."""

import email.message
import io
import json
import random
import socket
import subprocess
import sys
import threading
import time

import pytest

from quizstack import webforms
from quizstack.chaos import browser, load


# -- a scripted server on 127.0.0.1 ------------------------------------------------------

def _read_request(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\r\n")[0].decode()


class ScriptedServer:
    """Plays one list of actions per connection, in order: "ok" answers and keeps the
    connection, "drop" closes it without a byte, "silent" never answers, "partial"
    sends half a body and closes, and bytes are a page to answer with."""

    def __init__(self, *connections):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.listener.settimeout(5)
        self.base = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.seen = []
        self.thread = threading.Thread(target=self._serve, args=(connections,), daemon=True)
        self.thread.start()

    def _serve(self, connections):
        for actions in connections:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.settimeout(5)
            with sock:
                for action in actions:
                    line = _read_request(sock)
                    if line is None:
                        break
                    self.seen.append(line)
                    if isinstance(action, bytes):
                        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(action), action))
                    elif action == "ok":
                        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Server: s9\r\n\r\nhello")
                    elif action == "partial":
                        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                        break
                    elif action == "silent":
                        try:
                            sock.recv(1)  # until the client gives up
                        except OSError:
                            pass
                        break
                    else:  # drop
                        break

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes a pending accept
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)


def test_a_get_that_meets_a_closed_kept_alive_connection_is_sent_again_once():
    server = ScriptedServer(["ok", "drop"], ["ok"])
    conn = browser.Connection(server.base, timeout=2)
    first = conn.send("GET", "/a")
    second = conn.send("GET", "/b")
    server.close()
    assert first.reply.status == 200 and first.retried is False
    assert second.reply.body == b"hello" and second.reply.headers["X-Server"] == "s9"
    assert second.retried is True
    assert server.seen == ["GET /a HTTP/1.1", "GET /b HTTP/1.1", "GET /b HTTP/1.1"]


def test_a_post_on_a_reused_connection_that_died_unanswered_is_sent_again_as_browsers_do():
    server = ScriptedServer(["ok", "drop"], ["ok"])
    conn = browser.Connection(server.base, timeout=2)
    conn.send("GET", "/a")
    outcome = conn.send("POST", "/quizzes?once=1", b"x=1",
                        {"Content-Type": "application/x-www-form-urlencoded"})
    server.close()
    assert outcome.reply.status == 200 and outcome.retried is True
    assert server.seen.count("POST /quizzes?once=1 HTTP/1.1") == 2


def test_a_post_on_a_fresh_connection_is_never_sent_twice():
    server = ScriptedServer(["drop"])
    conn = browser.Connection(server.base, timeout=2)
    outcome = conn.send("POST", "/quizzes", b"x=1", {"Content-Type": "application/x-www-form-urlencoded"})
    server.close()
    assert outcome.reply is None and outcome.retried is False
    assert outcome.error == "closed before answering"
    assert server.seen.count("POST /quizzes HTTP/1.1") == 1


def test_a_fresh_connection_and_a_half_answer_are_not_retried():
    server = ScriptedServer(["drop"], ["ok", "partial"])
    conn = browser.Connection(server.base, timeout=2)
    fresh = conn.send("GET", "/a")
    conn.send("GET", "/b")
    half = conn.send("GET", "/c")
    server.close()
    assert fresh.reply is None and fresh.retried is False
    assert half.reply is None and half.retried is False and half.error
    assert server.seen == ["GET /a HTTP/1.1", "GET /b HTTP/1.1", "GET /c HTTP/1.1"]


def test_a_silent_server_times_out_at_the_request_timeout_without_a_retry():
    server = ScriptedServer(["ok", "silent"])
    conn = browser.Connection(server.base, timeout=0.3)
    conn.send("GET", "/a")
    started = time.monotonic()
    outcome = conn.send("GET", "/b")
    took = time.monotonic() - started
    server.close()
    assert outcome == browser.Outcome(None, "timeout", False)
    assert 0.25 < took < 1.5


def test_a_refused_connection_says_so():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = browser.Connection(f"http://127.0.0.1:{port}", timeout=1).send("GET", "/")
    assert outcome == browser.Outcome(None, "connection refused", False)


# -- the schedule ------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_schedule_spreads_the_rate_and_ends_at_its_time():
    clock = FakeClock()
    pacer = load.Pacer(rate=10, seconds=1, clock=clock)
    slots = []
    while (slot := pacer.take()) is not None:
        slots.append(round(slot - 100, 6))
    assert slots == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def test_the_schedule_stops_at_its_request_bound():
    pacer = load.Pacer(rate=1000, seconds=60, max_requests=3, clock=FakeClock())
    assert [pacer.take() is not None for _ in range(5)] == [True, True, True, False, False]


def test_a_late_request_goes_at_once_and_is_not_followed_by_a_burst():
    clock = FakeClock()
    pacer = load.Pacer(rate=10, seconds=10, clock=clock)
    pacer.take(), pacer.take()          # 100.0 and 100.1
    clock.now = 103.0                   # everyone was stuck for three seconds
    late = [pacer.take() for _ in range(3)]
    assert [round(slot - 100, 6) for slot in late] == [3.0, 3.1, 3.2]


# -- what the user saw: redirects, cookies, flash messages ---------------------------------

def headers(*pairs):
    message = email.message.Message()
    for name, value in pairs:
        message[name] = value
    return message


def reply(status, *pairs):
    return browser.Reply(status, headers(*pairs), b"")


def test_a_post_went_well_only_when_redirected_to_the_right_place():
    check = browser.redirect_to(r"/quizzes/\d+")
    assert check(reply(302, ("Location", "/quizzes/17"))) is None
    assert check(reply(302, ("Location", "/session?redir=/quizzes"))) == "redirected to /session?redir=/quizzes"
    assert check(reply(200)) == "HTTP 200"
    assert check(reply(503)) == "HTTP 503"


def test_cookies_are_kept_replaced_and_deleted_but_messages_are_not_kept():
    visitor = browser.Visitor()
    visitor.take_cookies(headers(("Set-Cookie", "sessionid=abc; HttpOnly; Path=/"),
                                 ("Set-Cookie", "csrftoken=t1; Path=/"),
                                 ("Set-Cookie", "messages=xyz; Path=/")))
    assert visitor.cookies == {"sessionid": "abc", "csrftoken": "t1"}
    visitor.take_cookies(headers(("Set-Cookie", 'sessionid=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; '
                                                "Max-Age=0; Path=/"),
                                 ("Set-Cookie", "csrftoken=t2; Path=/")))
    assert visitor.cookies == {"csrftoken": "t2"}
    assert visitor.cookie_header() == "csrftoken=t2"


DJANGO_MESSAGES = """
from django.conf import settings
settings.configure(SECRET_KEY="unit-tests")
from django.contrib.messages import constants
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpRequest, HttpResponse
storage, response = CookieStorage(HttpRequest()), HttpResponse()
storage.add(constants.SUCCESS, "Tip created successfully.")
storage.add(constants.ERROR, 'This quiz already has the maximum of 50 tips; "really".')
storage.update(response)
print(response.cookies.output(header="").strip())
"""


def test_flash_messages_are_read_as_django_writes_them():
    pytest.importorskip("django")
    made = subprocess.run([sys.executable, "-c", DJANGO_MESSAGES], capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    answer = headers(("Location", "/quizzes/3/play"), ("Set-Cookie", made.stdout.strip()))
    assert browser.flash(answer) == [
        (25, "Tip created successfully."), (40, 'This quiz already has the maximum of 50 tips; "really".')]
    check = browser.redirect_to("/quizzes/3/play")
    assert check(browser.Reply(302, answer, b"")) == 'This quiz already has the maximum of 50 tips; "really".'


def test_unreadable_flash_messages_are_no_messages():
    assert browser.decode_messages("not base64 at all!:sig") == []
    assert browser.decode_messages(".AAAA:1:sig") == []


# -- forms: posted where the page says, as a browser posts them ---------------------------

TOKEN = "3f9c" * 8
NEW_QUIZ_PAGE = (
    b'<header><form method="post" action="/session" class="inline">'
    b'<input type="hidden" name="csrfmiddlewaretoken" value="c5rf"><input type="hidden" name="_method" '
    b'value="DELETE"></form></header><form method="get" action="/quizzes"></form>'
    b'<form method="post" action="/quizzes?once=' + TOKEN.encode() + b'" enctype="multipart/form-data">'
    b'<input type="hidden" name="csrfmiddlewaretoken" value="c5rf"></form>')


def test_the_form_is_found_by_where_it_posts_and_its_action_kept_whole():
    assert webforms.form_action(NEW_QUIZ_PAGE, "/quizzes") == f"/quizzes?once={TOKEN}"
    assert webforms.form_action(NEW_QUIZ_PAGE, "/session") == "/session"
    assert webforms.form_action(b'<FORM METHOD="POST" ACTION="/users?once=1&amp;x=2">', "/users") == "/users?once=1&x=2"
    absolute = b'<form method="post" action="http://10.2.2.2/users?once=7">'
    assert webforms.form_action(absolute, "/users") == "/users?once=7"
    assert webforms.form_action(NEW_QUIZ_PAGE, "/users") is None
    assert webforms.form_action(b'<form action="/quizzes">', "/quizzes") is None  # a GET form is no place to post


def test_a_writer_posts_the_form_to_its_own_action_with_the_token():
    server = ScriptedServer([NEW_QUIZ_PAGE, "ok"])
    agent = load.Agent(server.base, browser.Connection(server.base, timeout=2))
    reply, ok = agent.submit("create", browser.Visitor(), "/quizzes", "/quizzes/new", {"question": "q"},
                             browser.page_ok, "form", files={"image": ("a.png", b"png", "image/png")})
    agent.conn.close()
    server.close()
    assert ok and reply.body == b"hello"
    assert server.seen == ["GET /quizzes/new HTTP/1.1", f"POST /quizzes?once={TOKEN} HTTP/1.1"]


def test_a_page_without_the_form_is_a_failed_form_and_nothing_is_posted():
    server = ScriptedServer([b"<p>Please log in</p>"])
    records = io.StringIO()
    agent = load.Agent(server.base, browser.Connection(server.base, timeout=2), load.Output(records))
    reply, ok = agent.submit("tip", browser.Visitor(), "/quizzes/3/tips", "/quizzes/3/play", {"text": "t"},
                             browser.page_ok, "form")
    agent.conn.close()
    server.close()
    assert (reply, ok) == (None, False)
    assert server.seen == ["GET /quizzes/3/play HTTP/1.1"]
    record = json.loads(records.getvalue())
    assert (record["kind"], record["status"], record["ok"]) == ("form", 200, False)
    assert record["err"] == "no form on the page"


# -- images, acks ------------------------------------------------------------------------

def test_images_are_valid_pngs_of_a_few_kilobytes_and_never_the_same():
    image_module = pytest.importorskip("PIL.Image")
    rng = random.Random(1)
    images = [load.random_png(rng) for _ in range(20)]
    assert len(set(images)) == 20
    assert all(2_000 < len(image) < 40_000 for image in images)
    for image in images[:3]:
        with image_module.open(io.BytesIO(image)) as opened:
            opened.verify()
            assert opened.format == "PNG"


def test_verify_reads_the_acks_out_of_a_whole_run():
    lines = [
        json.dumps({"t": 1.0, "dt": 0.1, "kind": "list", "ok": True}),
        json.dumps({"ack": "quiz", "t": 2.0, "id": 7, "question": "m", "sha256": "ab", "size": 3}),
        "not json",
        json.dumps({"ack": "tip", "t": 3.0, "quiz": 7, "text": "n"}),
        json.dumps({"done": True, "requests": 1, "seconds": 1.0}),
    ]
    assert [ack["ack"] for ack in load.read_acks(lines)] == ["quiz", "tip"]


def test_the_command_line_refuses_what_it_cannot_keep_to():
    with pytest.raises(SystemExit):
        load.parse_args(["run", "--base", "http://10.2.2.2/other/path", "--seconds", "1"])
    with pytest.raises(SystemExit):
        load.parse_args(["run", "--base", "http://10.2.2.2", "--seconds", "1", "--writes", "2"])
    options = load.parse_args(["run", "--base", "http://10.2.2.2:80/", "--seconds", "5", "--admin", "admin:12:34"])
    assert options.base == "http://10.2.2.2:80" and options.admin == ("admin", "12:34")
    assert options.name and options.rate == 20 and options.max_requests is None


class _FlakyAgent:
    """Stands in for load.Agent in setup(): the service answers each kind of step after ``fails`` failures."""

    fails = {}
    calls = []

    def __init__(self, base, conn, out=None, slot=None):
        self.conn = conn
        self.last_failure = None

    def _answer(self, kind):
        _FlakyAgent.calls.append(kind)
        left = _FlakyAgent.fails.get(kind, 0)
        _FlakyAgent.fails[kind] = left - 1
        if left > 0:
            self.last_failure = f"{kind}: HTTP 503 (s2)"
        return left <= 0

    def request(self, kind, visitor, method, path, *args, **kwargs):
        reply = type("Reply", (), {"body": b'[{"id": 1}, {"id": 2}]'})()
        return (reply, True) if self._answer("list") else (None, False)

    def login(self, visitor):
        return self._answer("login")

    def submit(self, kind, visitor, path, form_path, *args, **kwargs):
        return None, self._answer("user")


def _setup_with(monkeypatch, **fails):
    import argparse

    monkeypatch.setattr(load, "Agent", _FlakyAgent)
    monkeypatch.setattr(load.time, "sleep", lambda seconds: None)
    _FlakyAgent.fails, _FlakyAgent.calls = dict(fails), []
    options = argparse.Namespace(base="http://127.0.0.1:9", name="t", timeout=1.0, writes=1, admin=("admin", "pw"),
                                 seed=1)
    run = load.Run(options, out=None)
    workers = [type("W", (), {"user": None})() for _ in range(2)]
    load.setup(run, workers)
    return run, workers, _FlakyAgent.calls


def test_the_setup_gets_over_a_server_s_first_failures(monkeypatch):
    """An experiment often starts as the last one heals: a 503 or two is not the end of it."""
    run, workers, calls = _setup_with(monkeypatch, list=2, login=2, user=1)
    assert run.quiz_ids == [1, 2] and all(worker.user is not None for worker in workers)
    assert calls.count("list") == 3 and calls.count("login") >= 3


@pytest.mark.parametrize("step, message", [("list", "cannot read /quizzes.json (3 tries; last: list: HTTP 503 (s2))"),
                                           ("login", "cannot log in as admin (3 tries; last: login: HTTP 503 (s2))")])
def test_the_setup_gives_up_after_three_tries_saying_which_step(monkeypatch, step, message):
    with pytest.raises(load.SetupFailed) as failed:
        _setup_with(monkeypatch, **{step: 3})
    assert str(failed.value) == message
    assert _FlakyAgent.calls.count(step) == 3


def test_an_agent_remembers_its_last_failure_and_who_answered():
    answers = [reply(503, ("X-Server", "s2")), reply(200), None]

    class Conn:
        def send(self, method, path, body=None, headers=None):
            answer = answers.pop(0)
            return answer, (None if answer else "connection refused"), False

    agent = load.Agent("http://service", Conn())
    assert agent.request("t", browser.Visitor(), "POST", "/session")[1] is False
    assert agent.last_failure == "POST /session: HTTP 503 (s2)"
    assert agent.request("t", browser.Visitor(), "GET", "/quizzes")[1] is True
    assert agent.last_failure == "POST /session: HTTP 503 (s2)"  # a success does not erase it
    agent.request("t", browser.Visitor(), "GET", "/quizzes.json")
    assert agent.last_failure == "GET /quizzes.json: connection refused"
