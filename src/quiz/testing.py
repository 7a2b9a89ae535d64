"""A throwaway PostgreSQL server for tests and benchmarks.

The app's tests must run against the database it is deployed on, not a
stand-in, so the harness starts a real server from the Debian packages: initdb
into a temporary directory as the ``postgres`` system user (initdb refuses
root), ``postgres`` on 127.0.0.1 and a free port, readiness polled with
``pg_isready``, and at the end the server stopped by its own PID and the
directory removed. Durability is switched off: the data dies with the test.

Usage::

    from quiz.testing import TemporaryPostgres, PostgresUnavailable

    with TemporaryPostgres() as pg:
        pg.create_database("quiz")
        os.environ["DATABASE_URL"] = pg.url("quiz")

It also holds the helpers the app's tests are written with, so they read like
a user's actions: ``login_as(client, "pepe")``, ``make_quiz(...)``,
``png_bytes()``, ``wsgi_call(application, "/quizzes")``; and the database faults they play on 127.0.0.1:
``SilentServer`` (takes connections, never answers), ``FreezableProxy`` (a
relay that freezes like a hung host) and ``in_thread`` (requests on a
connection of their own, pointed at either).
"""

import glob
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time


class PostgresUnavailable(RuntimeError):
    """This machine cannot run a temporary server (no binaries, not root): tests skip."""


class PostgresError(RuntimeError):
    """The server was there but failed to start or to do what was asked."""


def _bindir():
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise PostgresUnavailable("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    return os.path.dirname(candidates[-1])


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_available():
    """Raise PostgresUnavailable with the reason this machine can't run a temporary server."""
    _bindir()
    if os.geteuid() != 0:
        raise PostgresUnavailable("not root: a temporary PostgreSQL runs as the postgres system user, which needs root")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("no 'postgres' system user (installed by the postgresql package)") from None


class TemporaryPostgres:
    """Start a private PostgreSQL server; stop it and delete its data on exit."""

    def __init__(self, ready_timeout=60.0, fast=True):
        self.ready_timeout = ready_timeout
        self.fast = fast
        self.port = None
        self.dir = None
        self.proc = None
        self._log = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self):
        check_available()
        bindir = _bindir()
        pw = pwd.getpwnam("postgres")
        self.dir = tempfile.mkdtemp(prefix="quiz-pg-")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = os.path.join(self.dir, "data")
        as_postgres = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "cwd": self.dir}
        try:
            result = subprocess.run(
                [os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
                 "-E", "UTF8", "--no-locale", "--no-sync"],
                capture_output=True, text=True, **as_postgres,
            )
            if result.returncode != 0:
                raise PostgresError(f"initdb -D {data} failed ({result.returncode}): {result.stderr.strip()}")
            self.port = free_port()
            argv = [os.path.join(bindir, "postgres"), "-D", data, "-k", self.dir,
                    "-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
                    "-c", "max_connections=100"]
            if self.fast:
                for option in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                    argv += ["-c", option]
            self._log = open(os.path.join(self.dir, "postgres.log"), "wb")
            self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, **as_postgres)
            self._wait_ready(bindir)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, bindir):
        deadline = time.monotonic() + self.ready_timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PostgresError(f"postgres exited with {self.proc.returncode}: {self.log_tail()}")
            check = subprocess.run(
                [os.path.join(bindir, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-t", "1"],
                capture_output=True, text=True,
            )
            if check.returncode == 0:
                return
            last = check.stdout.strip() or check.stderr.strip()
            time.sleep(0.05)  # poll interval, not a wait for readiness
        raise PostgresError(f"postgres on port {self.port} not ready after {self.ready_timeout}s: {last}; {self.log_tail()}")

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.dir, "postgres.log"), errors="replace") as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self):
        """Fast shutdown (SIGINT) of the server we started, then remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- use -------------------------------------------------------------------------

    def url(self, dbname="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name):
        """Create an empty database and return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


# -- helpers for tests written as a user's actions ------------------------------------

# The seed's demo users (quiz.seed), there because tests/app/conftest.py sets QUIZ_DEMO_USERS=1.
PASSWORDS = {"admin": "1234", "pepe": "5678"}


def login_as(client, username, password=None):
    """Log in through the login form, as a person would; returns the redirect response."""
    response = client.post("/session", {
        "login": username, "password": password or PASSWORDS.get(username, username + "-pass"),
        "redir": "/", "commit": "Login",
    })
    assert response.status_code == 302, f"login as {username} failed: {response.status_code}"
    return response


def make_user(username, is_admin=False):
    """A user whose password is ``<username>-pass`` (the seed users keep theirs)."""
    from quiz.models import User

    return User.objects.create_user(username, PASSWORDS.get(username, username + "-pass"), is_admin=is_admin)


def make_quiz(question="What is 2+2?", answer="4", author=None, **fields):
    from quiz.models import Quiz

    return Quiz.objects.create(question=question, answer=answer, author=author, **fields)


def user(username):
    from quiz.models import User

    return User.objects.get(username=username)


def png_bytes(size=(8, 6), color=(200, 30, 30), fmt="PNG"):
    """A small real image, made on the spot."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def image_upload(name="pic.png", content=None, content_type="image/png"):
    """An uploaded file for the test client (a real PNG unless ``content`` says otherwise)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, png_bytes() if content is None else content, content_type=content_type)


# -- database faults on 127.0.0.1 ---------------------------------------------------------


def wsgi_call(application, path, method="GET", **extra):
    """One request to a WSGI ``application`` as gunicorn makes it: (status line, headers by name, body).

    Django's test client has a handler of its own; this reaches
    ``quiz.wsgi:application`` itself (quiz.anonymous). ``extra`` adds or
    replaces environ keys (``HTTP_COOKIE=...``). A header name sent twice
    fails, Set-Cookie aside (the dict keeps its last one).
    """
    import io
    import sys

    path_info, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path_info, "QUERY_STRING": query, "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "10.2.3.1", "HTTP_X_FORWARDED_PROTO": "https",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False, **extra,
    }
    started = []
    result = application(environ, lambda status, headers, exc_info=None: started.append((status, headers)))
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    status, headers = started[0]
    names = [name.lower() for name, _ in headers if name.lower() != "set-cookie"]
    assert len(names) == len(set(names)), f"a header sent twice: {headers}"
    return status, dict(headers), body


def committed_database(postgres, django_db_blocker, name):
    """A migrated, seeded database of its own on `postgres` (writes there are committed,
    for tests of many servers at once); its settings for in_thread."""
    from django.core.management import call_command

    from quiz.seed import load_seed

    postgres.create_database(name)
    settings = {"NAME": name, "HOST": "127.0.0.1", "PORT": str(postgres.port), "USER": "postgres"}

    def setup():
        call_command("migrate", verbosity=0)
        load_seed()

    with django_db_blocker.unblock():
        in_thread(setup, settings)
    return settings


def in_thread(call, database, timeout=60):
    """Run ``call()`` in a new thread whose database connection uses ``database``; return its result.

    ``database`` holds Django settings keys (NAME, HOST, PORT, OPTIONS…) that
    replace the default connection's, for that thread only: its connection is
    its own, outside any test transaction, so what it writes is committed. The
    thread's connections (the standby's too) are closed when ``call``
    returns; an exception it raised is raised here; a thread still running
    after ``timeout`` seconds fails.
    """
    from django.db import connections

    outcome = {}

    def run():
        own = connections["default"]
        own.settings_dict = {**own.settings_dict, **database}
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            connections.close_all()  # this thread's own: the default one and any other it opened

    thread = threading.Thread(target=run, name="quiz-test-requests", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"requests still running after {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class SilentServer:
    """A TCP port on 127.0.0.1 that takes connections and never answers, like a hung database host.

    It listens and never accepts: the kernel completes the handshakes of the
    backlog and takes the bytes sent, and nothing ever comes back.
    """

    def __enter__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = self.sock.getsockname()[1]
        return self

    def __exit__(self, *exc):
        self.sock.close()


class FreezableProxy:
    """A TCP relay on 127.0.0.1 to a local server, which can freeze like a hung host.

    Frozen, it keeps every connection open and its kernel still acknowledges
    what is sent, but nothing is relayed or answered, and new connections wait
    in the backlog, handshake done, unanswered: exactly what a client sees of
    a host whose programs are stopped. ``thaw`` relays again.
    """

    POLL = 0.05

    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self._relaying = threading.Event()
        self._relaying.set()
        self._closing = threading.Event()
        self._threads = []
        self._sockets = []

    def freeze(self):
        self._relaying.clear()

    def thaw(self):
        self._relaying.set()

    def __enter__(self):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.listener.settimeout(self.POLL)
        self.port = self.listener.getsockname()[1]
        self._start(self._accept)
        return self

    def __exit__(self, *exc):
        self._closing.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in [self.listener, *self._sockets]:
            sock.close()

    def _start(self, target, *args):
        thread = threading.Thread(target=target, args=args, name="quiz-test-proxy", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self):
        while not self._closing.is_set():
            if not self._relaying.is_set():
                self._closing.wait(self.POLL)
                continue
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(self.target, timeout=5)
            self._sockets += [client, server]
            self._start(self._pump, client, server)

    def _pump(self, client, server):
        other = {client: server, server: client}
        while not self._closing.is_set():
            if not self._relaying.is_set():
                self._closing.wait(self.POLL)
                continue
            readable, _, _ = select.select([client, server], [], [], self.POLL)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                    if data:
                        other[sock].sendall(data)
                        continue
                except OSError:
                    pass
                for end in (client, server):  # one side closed: close the other, as a relay does
                    try:
                        end.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
