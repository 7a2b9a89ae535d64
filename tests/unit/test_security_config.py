"""What faces the clients, as configured: no shared password, bounded bodies and
logins at the balancer, tokens out of its log, the credentials off command lines."""

import json
import subprocess
import time

import pytest

from quizstack.deploy import render
from quizstack.deploy.plan import build_plan
from quizstack.deploy.secrets import (ADMIN_USER, DEMO_ADMIN_PASSWORD, django_hash_matches,
                                      django_password_hash, load_or_create)
from quizstack.topology import load_scenario


@pytest.fixture(scope="module")
def complete():
    return build_plan(load_scenario("complete"))


def test_each_lab_gets_its_own_administrator_password_and_only_its_hash_goes_out(tmp_path):
    one = load_or_create(tmp_path / "one")
    two = load_or_create(tmp_path / "two")
    assert one["admin_password"] != two["admin_password"] and len(one["admin_password"]) >= 24
    assert one["admin_password"] != DEMO_ADMIN_PASSWORD
    assert django_hash_matches(one["admin_password_hash"], one["admin_password"])
    assert not django_hash_matches(one["admin_password_hash"], two["admin_password"])
    # Kept: the second read makes no new hash (the salt would change it).
    assert load_or_create(tmp_path / "one") == one


def test_the_hash_is_the_one_django_checks():
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    # Django's own PBKDF2 hasher, whatever hashers the settings of this process list
    # (the app's tests use a quicker one).
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    encoded = django_password_hash("correct horse", iterations=1000)
    hasher = PBKDF2PasswordHasher()
    assert hasher.verify("correct horse", encoded) and not hasher.verify("wrong", encoded)
    assert django.VERSION >= (4, 2)


def test_the_servers_environment_names_the_hash_never_the_password(complete, tmp_path):
    secrets = load_or_create(tmp_path / "s")
    text = render.env_file(render.app_environment(complete, secrets))
    assert secrets["admin_password"] not in text
    assert secrets["admin_password_hash"] in text
    assert "QUIZ_DEMO_USERS=0\n" in text and "DJANGO_ALLOWED_HOSTS=*" not in text


def test_the_balancer_refuses_long_bodies_and_login_floods_before_a_server(complete):
    cfg = render.haproxy_cfg(complete)
    frontend = cfg.split("frontend quiz\n")[1].split("\nbackend ")[0]
    assert (f"http-request deny deny_status 413 if {{ req.hdr_val(content-length) gt "
            f"{render.MAX_BODY} }}") in frontend
    assert "http-request track-sc0 src if login_try login_path" in frontend
    assert (f"deny_status 429 hdr Retry-After {render.LOGIN_WINDOW} " in frontend
            and f"acl login_flood sc_gpc0_rate(0) gt {render.LOGIN_TRIES}" in frontend)
    # Refused before a backend is chosen: no rule after them sends a request on first.
    assert frontend.index("deny_status 429") < frontend.index("default_backend")
    assert "timeout http-request 10s" in cfg


def test_the_balancer_drops_its_privileges_and_redacts_tokens(complete):
    cfg = render.haproxy_cfg(complete)
    for line in ("user haproxy", "group haproxy", "chroot /var/lib/haproxy"):
        assert f"    {line}\n" in cfg.split("defaults\n")[0]
    assert "%{+Q}r" not in cfg and "%[var(txn.logged_uri)]" in cfg


def test_haproxy_redacts_a_token_as_configured(complete, tmp_path):
    """HAProxy itself parses the configuration (the rules' syntax, the regex)."""
    haproxy = pytest.importorskip("shutil").which("haproxy")
    if not haproxy:
        pytest.skip("haproxy is not installed")
    cfg = render.haproxy_cfg(complete).replace(f"errorfile 503 {render.HAPROXY_503}", "")
    path = tmp_path / "haproxy.cfg"
    path.write_text(cfg)
    done = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_administrator_login_is_generated_unless_the_scenario_is_a_teaching_setup(tmp_path):
    from quizstack.check import admin_login

    pfinal = build_plan(load_scenario("pfinal"))
    complete = build_plan(load_scenario("complete"))
    assert pfinal.demo and not complete.demo
    assert admin_login(tmp_path, pfinal) == (ADMIN_USER, DEMO_ADMIN_PASSWORD)
    user, password = admin_login(tmp_path, complete)
    assert user == ADMIN_USER and password == load_or_create(tmp_path)["admin_password"]


def test_demo_must_be_a_boolean(tmp_path):
    from quizstack.errors import ScenarioError

    from pathlib import Path

    source = Path(load_scenario("complete").source).read_text()
    path = tmp_path / "bad.toml"
    path.write_text(source.replace("[service]\nport = 80", '[service]\nport = 80\ndemo = "yes"'))
    with pytest.raises(ScenarioError, match="demo must be true or false"):
        build_plan(load_scenario(str(path)))


class RecordingLab:
    """Records what the checks ask the hosts to run, and answers as the clients would (no lab)."""

    def __init__(self, flood, state_dir):
        self.flood, self.calls, self.state_dir = flood, [], state_dir
        self.topology = load_scenario("complete")

    def run(self, host, argv, timeout=60, check=True, env=None):
        self.calls.append((host, argv, env))
        if "quizstack.check.client" in argv:
            command = argv[argv.index("quizstack.check.client") + 1]
            answer = self.flood if command == "flood" else {"status": 302, "logged_in": True,
                                                            "by": "server"}
            return subprocess.CompletedProcess(argv, 0, json.dumps(answer), "")
        return subprocess.CompletedProcess(argv, 0, "", "")   # the table cleared on a balancer


THROTTLED = {"status": 429, "logged_in": False, "by": "balancer"}


def test_the_checks_pass_the_password_in_the_environment_not_the_command_line(complete, tmp_path):
    from quizstack.check import Checker
    from quizstack.check.security import login_flood

    lab = RecordingLab({"answers": {"balancer 429": 35, "server 200": 5}, "retry_after": ["10"],
                        "seconds": 3.0, "then": THROTTLED}, tmp_path)
    (row,) = login_flood(Checker(lab, complete))
    password = load_or_create(tmp_path / "secrets")["admin_password"]
    assert row.ok, row.detail
    clients = [(host, env) for host, argv, env in lab.calls if "quizstack.check.client" in argv]
    # The flood and a login after it from the last client, a login meanwhile from the first.
    assert [h for h, _ in clients] == ["c2", "c1", "c2"]
    assert all(env == {"QUIZSTACK_PASSWORD": password} for _, env in clients)
    assert all(password not in " ".join(map(str, argv)) for _, argv, _ in lab.calls)
    # The flooder's address is forgotten on both balancers before its last login.
    cleared = [(h, argv[-1]) for h, argv, _ in lab.calls if "quizstack.check.client" not in argv]
    assert cleared == [("lb1", "10.2.1.12"), ("lb2", "10.2.1.12")]


@pytest.mark.parametrize("answers, then, ok", [
    ({"balancer 429": 35, "server 200": 5}, THROTTLED, True),
    ({"server 200": 40}, THROTTLED, False),                      # nothing throttled
    ({"balancer 429": 20, "server 200": 20}, THROTTLED, False),  # too many reached a password check
    ({"balancer 429": 35, "server 200": 5},                      # the flooder still got in
     {"status": 302, "logged_in": True, "by": "server"}, False),
])
def test_the_flood_row_fails_when_the_throttle_does_not_hold(complete, tmp_path, answers, then, ok):
    from quizstack.check import Checker
    from quizstack.check.security import login_flood

    lab = RecordingLab({"answers": answers, "retry_after": ["10"], "seconds": 3.0, "then": then},
                       tmp_path)
    (row,) = login_flood(Checker(lab, complete))
    assert row.ok is ok


def test_haproxy_throttles_failed_logins_per_address_and_never_successful_ones(complete, tmp_path):
    """The balancer's own rules, run by HAProxy on loopback in front of a stand-in server
    that answers a login as QUIZ does (a redirect when right, the form when wrong)."""
    import http.server
    import re
    import shutil
    import socket
    import threading
    import urllib.error
    import urllib.request

    haproxy = shutil.which("haproxy")
    if not haproxy:
        pytest.skip("haproxy is not installed")

    class Quiz(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(302 if body == b"right" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The frontend as rendered, bound to loopback, in front of the stand-in.
    cfg = render.haproxy_cfg(complete)
    frontend = cfg.split("frontend quiz\n")[1].split("\nbackend ")[0]
    rules = [line for line in frontend.splitlines()
             if "login" in line or "sc0_tracked" in line or "stick-table" in line]
    path = tmp_path / "haproxy.cfg"
    path.write_text(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
        f"frontend quiz\n    bind 127.0.0.1:{port}\n" + "\n".join(rules) + "\n"
        "    default_backend quiz\n"
        f"backend quiz\n    server q 127.0.0.1:{server.server_address[1]}\n")
    proc = subprocess.Popen([haproxy, "-db", "-f", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        def login(password):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/session", data=password,
                                             method="POST")
            opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                                      {"redirect_request": lambda *a, **k: None}))
            try:
                with opener.open(request, timeout=5) as answer:
                    return answer.status
            except urllib.error.HTTPError as exc:
                return exc.code

        for _ in range(50):   # HAProxy listening
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        # Many successful logins from one address: none refused.
        assert [login(b"right") for _ in range(25)] == [302] * 25
        # Failed ones: the first LOGIN_TRIES reach the server, then 429 even for the right one.
        wrong = [login(b"wrong") for _ in range(render.LOGIN_TRIES + 5)]
        assert wrong[:render.LOGIN_TRIES] == [200] * render.LOGIN_TRIES
        assert set(wrong[render.LOGIN_TRIES + 1:]) == {429}
        assert login(b"right") == 429
        assert re.search(r"Retry-After \d+", frontend)
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()
