"""The load of a chaos experiment: QUIZ users, scripted, paced and bounded, inside the client hosts.

A fault is judged by what it does to users, so the load is made of users. It
runs inside c1 and c2 (``python -m quizstack.chaos.load``, the project's
Python, standard library only, like check/client.py) and crosses the firewall
and the load balancer the way browsers do: keep-alive connections, cookies,
CSRF tokens, forms with images. Every request becomes a JSON line on stdout
the moment it ends, and so does every write the service acknowledged, so the
runner watches live and afterwards asks ``verify`` whether each acknowledged
write is still there and ``fetch`` whether every app server holds the same
image bytes. The load is bounded in time and in requests and follows a
schedule that never bursts to catch up, so what the figures show is the
fault, not a storm the generator made after it.

    python -m quizstack.chaos.load run --base URL --seconds S [--rate R] [--workers W]
        [--writes FRACTION] [--max-requests N] [--seed N] [--name TAG] [--timeout T]
        [--admin USER[:PASSWORD]]
    python -m quizstack.chaos.load verify --base URL --admin USER[:PASSWORD] [--budget S] < acks.jsonl
    python -m quizstack.chaos.load fetch --server NAME=URL [--server ...] < names

Output of ``run``, one JSON object a line:

- a request: ``{"t", "dt", "kind", "status", "server", "ok", "err", "retried"}``;
  kinds: list, show, play, check (anonymous reads), form (the page a writer
  fills in: /quizzes/new or a quiz's play page), create, tip (the POSTs),
  login, setup (this run's users and the quiz list);
- an acknowledged write: ``{"ack": "quiz", "t", "id", "question", "sha256", "size"}``
  or ``{"ack": "tip", "t", "quiz", "text"}`` (t: when the answer arrived);
- last: ``{"done": true, "requests", "seconds", "setup"}`` (+ ``"error"``).

``--max-requests`` and the rate bound the paced requests; the setup before
them (admin login, one user per worker, the quiz list) is counted in "setup".
"""

import argparse
import hashlib
import html
import json
import os
import random
import re
import secrets
import signal
import sys
import threading
import time
import traceback
import urllib.parse

from quizstack.chaos.browser import (TIMEOUT, Connection, Visitor, form_to, location, page_ok,
                                     redirect_to)
from quizstack.webforms import csrf_token, form_action, multipart, png

QUIZ_BUDGET = 40      # quizzes per user before a writer moves on (QUIZ allows 50 a day)
TIP_BUDGET = 40       # tips per quiz of this run (QUIZ allows 50)
RELOGIN_AFTER = 240   # QUIZ logs users out after 5 idle minutes; a user back from a pause logs in again
VERIFY_BUDGET = 300   # seconds verify may spend, so a service still down cannot hold it for hours
SETUP_TRIES = 3       # tries of each step before the load, and of a login to verify (patiently)
SEARCH_WORDS = ("", "", "capital", "of", "Italy", "the", "ld")
ANSWERS = ("Rome", "Lisbon", "Madrid", "Paris", "yes", "42")
IMAGE_RE = re.compile(rb'src="/uploads/([0-9a-f]+\.[a-z]+)"[^>]*\bid="attachment"')
NAME_RE = re.compile(r"^[0-9a-f]+\.[a-z]+$")


# -- pacing --------------------------------------------------------------------------------

class Pacer:
    """Start times for the paced requests: R a second in all, at most N, until the end.

    Workers take the next slot and sleep until it. A request that comes late
    (every worker was busy, the service stalled) goes at once and the next
    slot counts from it: a stall is never followed by a catch-up burst.
    """

    def __init__(self, rate, seconds, max_requests=None, clock=time.monotonic):
        self.clock = clock
        self.start = clock()
        self.end = self.start + seconds
        self.interval = 1.0 / rate
        self.max_requests = max_requests
        self.next = self.start
        self.taken = 0
        self.lock = threading.Lock()

    def take(self):
        """The next slot (a ``clock`` time), or None when the load is over."""
        with self.lock:
            slot = max(self.next, self.clock())
            if slot >= self.end - 1e-9 or (self.max_requests is not None and self.taken >= self.max_requests):
                return None
            self.next = slot + self.interval
            self.taken += 1
            return slot


# -- a user agent: requests recorded, forms filled in ---------------------------------------

class Output:
    """JSON lines on stdout, whole and flushed, from any thread; nothing after the last."""

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()
        self.closed = False
        self.requests = 0

    def emit(self, obj, request=False):
        with self.lock:
            if self.closed:
                return
            try:
                self.stream.write(json.dumps(obj) + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                self.closed = True  # the reader is gone; the run stops at its next slot
                return
            self.requests += request

    def close(self, obj):
        self.emit(obj)
        with self.lock:
            self.closed = True


class Agent:
    """Requests over one connection as a browser makes them: recorded to ``out`` (if
    given), each waiting for ``slot()`` (if given), forms loaded before they are sent."""

    def __init__(self, base, conn, out=None, slot=None):
        self.base, self.conn, self.out, self.slot = base, conn, out, slot
        self.last_failure = None  # what went wrong last: "POST /session: HTTP 503 (s2)"

    def request(self, kind, visitor, method, path, body=None, headers=None, want=page_ok):
        """One request; returns (reply or None, ok)."""
        if self.slot is not None:
            self.slot()
        headers = dict(headers or {})
        if visitor.cookies:
            headers["Cookie"] = visitor.cookie_header()
        started, clock = time.time(), time.monotonic()
        reply, error, retried = self.conn.send(method, path, body, headers)
        dt = time.monotonic() - clock
        if reply is not None:
            visitor.take_cookies(reply.headers)
            visitor.last_used = time.monotonic()
            error = want(reply)
        if error is not None:
            server = reply.headers.get("X-Server") if reply else None
            self.last_failure = f"{method} {path}: {error}" + (f" ({server})" if server else "")
        if self.out is not None:
            self.out.emit({
                "t": started, "dt": round(dt, 6), "kind": kind,
                "status": reply.status if reply else None,
                "server": reply.headers.get("X-Server") if reply else None,
                "id": reply.headers.get("X-Request-ID") if reply else None,
                "ok": error is None, "err": error, "retried": retried,
            }, request=True)
        return reply, error is None

    def submit(self, kind, visitor, path, form_path, fields, want, form_kind, files=None):
        """Load the form page, then POST its form that goes to ``path``: a person's two requests.

        Sent, as a browser sends it, to the form's own action, which for a
        creation carries QUIZ's one-time token (``/quizzes?once=…``: a copy
        of the POST, such as the balancer's retry, creates nothing more),
        with the page's CSRF token.
        """
        reply, ok = self.request(form_kind, visitor, "GET", form_path, want=form_to(path))
        if not ok:
            return None, False
        action = form_action(reply.body, path)
        fields = dict(fields, csrfmiddlewaretoken=csrf_token(reply.body))
        if files:
            body, content_type = multipart(fields, files)
        else:
            body = urllib.parse.urlencode(fields).encode()
            content_type = "application/x-www-form-urlencoded"
        return self.request(kind, visitor, "POST", action, body,
                            {"Content-Type": content_type, "Referer": self.base + form_path}, want)

    def login(self, visitor):
        visitor.cookies.clear()
        _, ok = self.submit("login", visitor, "/session", "/session",
                            {"login": visitor.username, "password": visitor.password, "redir": "/"},
                            redirect_to("/"), "login")
        return ok


# -- the run -------------------------------------------------------------------------------

class SetupFailed(Exception):
    pass


class _Stop(Exception):
    """No slot left: the worker ends its current action and stops."""


def random_png(rng):
    """A PNG of random pixels, 32 to 96 pixels a side: about 3 to 28 KB, never twice the same."""
    width, height = rng.randint(32, 96), rng.randint(32, 96)
    return png(width, height, pixels=rng.randbytes(width * height * 3))


class Run:
    """What the workers share: the target, the schedule, the output, this run's users and quizzes."""

    def __init__(self, options, out):
        self.options = options
        self.out = out
        self.base = options.base.rstrip("/")
        self.tag = options.name
        self.stop = threading.Event()
        self.pacer = None
        self.lock = threading.Lock()
        self.quiz_ids = []   # every quiz id known: the site's first page and this run's
        self.own = {}        # this run's quizzes: id -> tips sent
        self.users = 0
        self.markers = 0
        self.admin = None
        self.admin_lock = threading.Lock()
        self.errors = []

    def marker(self, kind):
        with self.lock:
            self.markers += 1
            number = self.markers
        return f"ld{self.tag}-{kind}{number}-{secrets.token_hex(4)}"

    def add_quiz(self, quiz_id, own=False):
        with self.lock:
            self.quiz_ids.append(quiz_id)
            if own:
                self.own[quiz_id] = 0

    def own_quiz_for_tip(self, rng):
        """One of this run's quizzes with room for a tip (counted as sent), or None."""
        with self.lock:
            open_ = [quiz_id for quiz_id, tips in self.own.items() if tips < TIP_BUDGET]
            if not open_:
                return None
            quiz_id = rng.choice(open_)
            self.own[quiz_id] += 1
            return quiz_id

    def known_quiz(self, rng):
        with self.lock:
            return rng.choice(self.quiz_ids) if self.quiz_ids else None

    def slot(self):
        """Wait for the next paced slot; _Stop when there is none."""
        if self.stop.is_set() or self.out.closed:
            raise _Stop
        slot = self.pacer.take()
        if slot is None:
            raise _Stop
        delay = slot - time.monotonic()
        if delay > 0 and self.stop.wait(delay):
            raise _Stop

    def new_user(self, agent):
        """A fresh user of this run, made by the admin and logged in; None if that failed."""
        with self.lock:
            self.users += 1
            user = Visitor(f"ld{self.tag}u{self.users}", secrets.token_urlsafe(12))
        with self.admin_lock:
            if time.monotonic() - self.admin.last_used > RELOGIN_AFTER and not agent.login(self.admin):
                return None
            _, ok = agent.submit("setup", self.admin, "/users", "/users/new",
                                 {"username": user.username, "password": user.password,
                                  "password_confirmation": user.password},
                                 redirect_to(r"/users/\d+"), "setup")
        if not ok or not agent.login(user):
            return None
        return user


class Worker:
    """One thread of users: anonymous reads, and writes by its own logged-in user."""

    def __init__(self, run, index):
        self.run = run
        seed = run.options.seed
        self.rng = random.Random(f"{seed}/{index}") if seed is not None else random.Random()
        self.agent = Agent(run.base, Connection(run.base, run.options.timeout), run.out, run.slot)
        self.anonymous = Visitor()
        self.user = None

    def loop(self):
        try:
            while True:
                if self.rng.random() < self.run.options.writes:
                    self.write()
                else:
                    self.read()
        except _Stop:
            pass
        except Exception:  # a bug here must not pass for a fault of the service
            self.run.errors.append(traceback.format_exc(limit=3).strip().splitlines()[-1])
            traceback.print_exc(file=sys.stderr)
        finally:
            self.agent.conn.close()

    def read(self):
        rng, quiz_id = self.rng, self.run.known_quiz(self.rng)
        pick = rng.random()
        if quiz_id is None or pick < 0.35:
            query = {"pageno": rng.randint(1, 5)} if rng.random() < 0.5 else {}
            word = rng.choice(SEARCH_WORDS)
            if word:
                query["search"] = word
            kind, path = "list", "/quizzes" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        elif pick < 0.6:
            kind, path = "show", f"/quizzes/{quiz_id}"
        elif pick < 0.8:
            kind, path = "play", f"/quizzes/{quiz_id}/play"
        else:
            kind, path = "check", f"/quizzes/{quiz_id}/check?" + urllib.parse.urlencode(
                {"answer": rng.choice(ANSWERS)})
        self.agent.request(kind, self.anonymous, "GET", path)

    def write(self):
        if self.user is None or self.user.quizzes >= QUIZ_BUDGET:
            self.user = self.run.new_user(self.agent)
            if self.user is None:
                return
        if time.monotonic() - self.user.last_used > RELOGIN_AFTER and not self.agent.login(self.user):
            return
        quiz_id = self.run.own_quiz_for_tip(self.rng) if self.rng.random() < 0.5 else None
        if quiz_id is None:
            self.create_quiz()
        else:
            self.add_tip(quiz_id)

    def create_quiz(self):
        run, marker, image = self.run, self.run.marker("q"), random_png(self.rng)
        self.user.quizzes += 1  # counted when tried: a lost answer may still have created it
        reply, ok = self.agent.submit("create", self.user, "/quizzes", "/quizzes/new",
                                      {"question": marker, "answer": "yes"},
                                      redirect_to(r"/quizzes/\d+"), "form",
                                      files={"image": ("load.png", image, "image/png")})
        if ok:
            quiz_id = int(location(reply).rsplit("/", 1)[1])
            run.add_quiz(quiz_id, own=True)
            run.out.emit({"ack": "quiz", "t": time.time(), "id": quiz_id, "question": marker,
                          "sha256": hashlib.sha256(image).hexdigest(), "size": len(image)})

    def add_tip(self, quiz_id):
        run, marker, play = self.run, self.run.marker("t"), f"/quizzes/{quiz_id}/play"
        _, ok = self.agent.submit("tip", self.user, f"/quizzes/{quiz_id}/tips", play,
                                  {"text": marker, "redir": play}, redirect_to(re.escape(play)), "form")
        if ok:
            run.out.emit({"ack": "tip", "t": time.time(), "quiz": quiz_id, "text": marker})


def setup(run, workers):
    """Before the paced load: the quiz list, the admin's login, one user per worker.

    Each step is tried up to SETUP_TRIES times: an experiment often starts
    right after another one healed, and a server just back may answer its
    first request or two with a 503 while its connections recover. That is
    the earlier drill's tail, not this one's result.
    """
    agent = Agent(run.base, Connection(run.base, run.options.timeout), run.out)
    try:
        def read_list():
            reply, ok = agent.request("setup", Visitor(), "GET", "/quizzes.json")
            return reply if ok else None

        reply = patiently(read_list)
        if reply is None:
            raise SetupFailed(f"cannot read /quizzes.json ({SETUP_TRIES} tries; last: {agent.last_failure})")
        try:
            for quiz in json.loads(reply.body):
                run.add_quiz(int(quiz["id"]))
        except (ValueError, KeyError, TypeError):
            raise SetupFailed("/quizzes.json is not a list of quizzes") from None
        if run.options.writes <= 0:
            return
        if run.options.admin is None:
            raise SetupFailed("writes need --admin USER:PASSWORD (an admin makes the users)")
        run.admin = Visitor(*run.options.admin)
        if not login_patiently(agent, run.admin):
            raise SetupFailed(f"cannot log in as {run.admin.username} ({SETUP_TRIES} tries; last: {agent.last_failure})")
        for worker in workers:
            worker.user = patiently(lambda: run.new_user(agent))
            if worker.user is None:
                raise SetupFailed(f"cannot create and log in this run's users ({SETUP_TRIES} tries; "
                                  f"last: {agent.last_failure})")
    finally:
        agent.conn.close()


def run_load(options, out, stdin=None):
    """The whole ``run`` command; returns the exit status."""
    run = Run(options, out)
    if threading.current_thread() is threading.main_thread():  # only there can signals be caught
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: run.stop.set())
    if options.until_eof and stdin is not None:
        # The runner holds the other end: if it dies (even by kill -9), the
        # load ends now instead of hammering the service for its full time.
        threading.Thread(target=lambda: (stdin.read(), run.stop.set()), daemon=True,
                         name="load-lease").start()
    workers = [Worker(run, index) for index in range(options.workers)]
    try:
        setup(run, workers)
    except SetupFailed as exc:
        out.close({"done": True, "requests": out.requests, "seconds": 0.0, "setup": out.requests,
                   "error": str(exc)})
        return 1
    setup_requests = out.requests
    run.pacer = Pacer(options.rate, options.seconds, options.max_requests)
    threads = [threading.Thread(target=worker.loop, name=f"load-{index}", daemon=True)
               for index, worker in enumerate(workers)]
    for thread in threads:
        thread.start()
    wait_for(threads, run)
    done = {"done": True, "requests": out.requests,
            "seconds": round(time.monotonic() - run.pacer.start, 3), "setup": setup_requests}
    if run.errors:
        done["error"] = run.errors[0]
    out.close(done)
    return 1 if run.errors else 0


def wait_for(threads, run):
    """Join the workers. They end by themselves at the schedule's end, after at most one
    more request each (two attempts); a signal ends the schedule at once. Joined in short
    steps so the signal handler runs."""
    grace = 2 * run.options.timeout + 1
    deadline = run.pacer.end + grace
    stopped = False
    for thread in threads:
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.1)
            if run.stop.is_set() and not stopped:
                stopped = True
                deadline = min(deadline, time.monotonic() + grace)


# -- after the experiment: verify and fetch -----------------------------------------------

def read_acks(lines):
    """The acknowledged writes among JSON lines (a whole run's output will do)."""
    acks = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("ack") in ("quiz", "tip"):
            acks.append(record)
    return acks


def fetch_page(conn, visitor, path, tries=3, pause=0.5):
    """(body, None) for a 200, else (None, why) after ``tries`` attempts."""
    why = None
    for attempt in range(tries):
        if attempt:
            time.sleep(pause)  # against a transient error, bounded by tries
        headers = {"Cookie": visitor.cookie_header()} if visitor.cookies else {}
        reply, error, _ = conn.send("GET", path, headers=headers)
        if reply is not None and reply.status == 200:
            visitor.take_cookies(reply.headers)
            return reply.body, None
        why = error if reply is None else f"HTTP {reply.status}"
    return None, why


def verify(base, admin, acks, timeout=TIMEOUT, budget=VERIFY_BUDGET):
    """Is every acknowledged write visible through the service? One pass, each quiz page once.

    A quiz page not fetched within ``budget`` seconds counts as missing ("not
    checked"): users could not see it either.
    """
    deadline = time.monotonic() + budget
    conn, visitor = Connection(base, timeout), Visitor(*admin)
    result = {"checked": len(acks), "missing": [], "images": {}}
    try:
        if not login_patiently(Agent(base, conn), visitor):
            result["error"] = f"cannot log in as {visitor.username}"
            return result
        pages = {}
        for ack in acks:
            quiz_id = ack["id"] if ack["ack"] == "quiz" else ack["quiz"]
            if quiz_id not in pages and time.monotonic() > deadline:
                pages[quiz_id] = (None, f"not checked: verify's {budget:g} s were spent")
            elif quiz_id not in pages:
                pages[quiz_id] = fetch_page(conn, visitor, f"/quizzes/{quiz_id}")
            image, why = check_ack(ack, *pages[quiz_id])
            if why is not None:
                key = {"id": quiz_id, "question": ack["question"]} if ack["ack"] == "quiz" else {
                    "quiz": quiz_id, "text": ack["text"]}
                result["missing"].append({"ack": ack["ack"], **key, "why": why})
            elif image is not None:
                result["images"][str(quiz_id)] = image
    finally:
        conn.close()
    return result


def patiently(step, tries=SETUP_TRIES, pause=0.5):
    """``step()`` until it gives something true, at most ``tries`` times; its last result."""
    result = None
    for attempt in range(tries):
        if attempt:
            time.sleep(pause)  # against a transient error, bounded by tries
        result = step()
        if result:
            break
    return result


def login_patiently(agent, visitor, tries=SETUP_TRIES, pause=0.5):
    return bool(patiently(lambda: agent.login(visitor), tries, pause))


def check_ack(ack, page, why):
    """(stored image name or None, why it is missing or None) for one ack and its quiz's page."""
    if page is None:
        return None, why
    marker = html.escape(ack["question"] if ack["ack"] == "quiz" else ack["text"]).encode()
    if marker not in page:
        return None, f"{'question' if ack['ack'] == 'quiz' else 'tip'} not on the quiz's page"
    if ack["ack"] == "tip":
        return None, None
    image = IMAGE_RE.search(page)
    return (image.group(1).decode(), None) if image else (None, "no image on the quiz's page")


def fetch_images(servers, names, timeout=TIMEOUT):
    """{server: {name: sha256 of what it serves, or None}}, straight from each app server."""
    result = {}
    for server, base in servers:
        conn = Connection(base, timeout)
        seen = result[server] = {}
        for name in names:
            if not NAME_RE.match(name):
                seen[name] = None  # not a stored image's name: never asked for
                continue
            reply, _, _ = conn.send("GET", f"/uploads/{name}")
            ok = reply is not None and reply.status == 200
            seen[name] = hashlib.sha256(reply.body).hexdigest() if ok else None
        conn.close()
    return result


# -- command line --------------------------------------------------------------------------

def _credentials(text):
    """USER:PASSWORD, or USER alone with the password in QUIZSTACK_PASSWORD (kept off
    the command line, where every process of the host could read it)."""
    user, sep, password = text.partition(":")
    if not sep:
        password = os.environ.get("QUIZSTACK_PASSWORD", "")
    if not user or not password:
        raise argparse.ArgumentTypeError("USER:PASSWORD, or USER with QUIZSTACK_PASSWORD set")
    return user, password


def _base(text):
    parts = urllib.parse.urlsplit(text)
    if parts.scheme != "http" or not parts.hostname or parts.path.strip("/"):
        raise argparse.ArgumentTypeError("http://HOST[:PORT]")
    return text.rstrip("/")


def _server(text):
    name, sep, url = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("NAME=http://HOST[:PORT]")
    return name, _base(url)


def _tag(text):
    tag = re.sub(r"[^A-Za-z0-9]", "", text)[:20]
    if not tag:
        raise argparse.ArgumentTypeError("letters and digits")
    return tag


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return value
    return parse


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m quizstack.chaos.load")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="a paced, bounded, mixed load of QUIZ users")
    run.add_argument("--base", type=_base, required=True)
    run.add_argument("--seconds", type=_positive(float), required=True)
    run.add_argument("--rate", type=_positive(float), default=20.0, help="requests a second, all workers")
    run.add_argument("--workers", type=_positive(int), default=4)
    run.add_argument("--writes", type=float, default=0.1, help="share of actions that write")
    run.add_argument("--max-requests", type=_positive(int), default=None)
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--name", type=_tag, default=None, help="tag of this run's users and markers")
    run.add_argument("--timeout", type=_positive(float), default=TIMEOUT)
    run.add_argument("--admin", type=_credentials, default=None)
    run.add_argument("--until-eof", action="store_true",
                     help="also stop when standard input closes (the caller is gone)")
    check = commands.add_parser("verify", help="are the acknowledged writes (stdin) there?")
    check.add_argument("--base", type=_base, required=True)
    check.add_argument("--admin", type=_credentials, required=True)
    check.add_argument("--timeout", type=_positive(float), default=TIMEOUT)
    check.add_argument("--budget", type=_positive(float), default=VERIFY_BUDGET,
                       help="seconds for the whole pass; pages not reached by then count as missing")
    fetch = commands.add_parser("fetch", help="sha256 of each image (stdin) on each server")
    fetch.add_argument("--server", type=_server, action="append", required=True)
    fetch.add_argument("--timeout", type=_positive(float), default=TIMEOUT)
    options = parser.parse_args(argv)
    if options.command == "run":
        if not 0 <= options.writes <= 1:
            parser.error("--writes is a fraction between 0 and 1")
        options.name = options.name or secrets.token_hex(3)
    return options


def main(argv, stdin=sys.stdin, stdout=sys.stdout):
    options = parse_args(argv)
    if options.command == "run":
        return run_load(options, Output(stdout), stdin)
    if options.command == "verify":
        result = verify(options.base, options.admin, read_acks(stdin), options.timeout, options.budget)
    else:
        names = [line.strip() for line in stdin if line.strip()]
        result = fetch_images(options.server, names, options.timeout)
    stdout.write(json.dumps(result) + "\n")
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
