"""The complete scenario as an attacker on the clients' side finds it, and as an honest user does.

The attacks themselves are `check`'s security rows (run by `up` in the
shared `complete` fixture); here they must have passed, and around them:
an honest user who mistypes is not throttled, a token never reaches a log,
the balancer's workers hold no root, a forged Host is refused. What each
defence stops when it is off is proved where it lives: the throttle's and
the body limit's unit and app tests, the control plane's and the pairs' own
lab tests.
"""

import secrets
import time

import pytest

from quizstack.check import admin_login
from quizstack.deploy.plan import build_plan
from quizstack.deploy.render_logs import STORE


@pytest.fixture(scope="module")
def lab(complete):
    return complete[0]


def test_every_security_row_passed_when_the_service_came_up(complete):
    _, result = complete
    rows = {r.name: r for r in result.checks if r.group == "security"}
    assert len(rows) == 3, sorted(rows)
    assert all(r.ok for r in rows.values()), [(r.name, r.detail) for r in rows.values() if not r.ok]


def client_python(lab, code, env=None, host="c1"):
    import sys

    done = lab.run(host, [f"{sys.prefix}/bin/python", "-c", code], timeout=120, env=env)
    return done.stdout.strip()


def test_an_honest_user_who_mistypes_twice_logs_in_at_the_third_try(lab):
    plan = build_plan(lab.topology)
    user, password = admin_login(lab.state_dir / "secrets", plan)
    shown = client_python(lab, (
        "import os\nfrom quizstack.check.client import Browser\n"
        f"b = Browser('http://{plan.lb_address}:{plan.port}')\n"
        "answers = [b.try_login('admin', 'typo-1')[0], b.try_login('admin', 'typo-2')[0]]\n"
        "status, _, done = b.try_login('admin', os.environ['QUIZSTACK_PASSWORD'])\n"
        "print(answers, status, done)\n"), env={"QUIZSTACK_PASSWORD": password})
    assert shown == "[200, 200] 302 True"


def test_no_log_line_holds_an_api_token(lab):
    plan = build_plan(lab.topology)
    token = "tok" + secrets.token_hex(10)
    lab.run("c1", ["curl", "-s", "-o", "/dev/null", f"http://{plan.lb_address}/api/quizzes?token={token}"],
            timeout=30)
    logs = plan.management.logs
    deadline, found = time.monotonic() + 15, ""
    while time.monotonic() < deadline and found.count("token=<redacted>") < 2:
        time.sleep(1)
        found = lab.run(logs, ["tail", "-n", "3000", f"{STORE}/all.log"],
                        timeout=30, check=False).stdout
    assert token not in found
    # The balancer's line and the server's, each with the token redacted.
    assert found.count("/api/quizzes?token=<redacted>") >= 2


def test_the_balancers_workers_hold_no_root(lab):
    for host in build_plan(lab.topology).lb_hosts:
        users = lab.run(host, ["ps", "-o", "user=", "-C", "haproxy"], timeout=20).stdout.split()
        # The master (root, to reload) and its worker (haproxy, in a chroot).
        assert "haproxy" in users and users.count("root") == 1, (host, users)


def test_a_request_naming_another_host_is_refused(lab):
    plan = build_plan(lab.topology)
    status = lab.run("c1", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                            "Host: attacker.example", f"http://{plan.lb_address}/quizzes"],
                     timeout=30).stdout
    assert status == "400"


def test_healthz_tells_a_client_nothing_of_the_database(lab):
    plan = build_plan(lab.topology)
    body = lab.run("c1", ["curl", "-s", f"http://{plan.lb_address}/healthz"], timeout=30).stdout
    assert body.strip() == "ok"
