"""The back end against an app server taken over, on the complete lab, as root.

Uses the complete lab shared by the lab tests (conftest.py). Each attack is
run for real from s1 (or, for the volume, from the witness) and must fail;
each is then shown to be a real attack — it succeeds once its defence is
lifted for a moment (the guard's table deleted on one host, the volume's
auth.allow reset, Patroni's login given from a database host) — and every
defence is put back before the test ends, whatever happened. The legitimate
paths still work: s1's router finds the primary, a switchover moves it
(patronictl logs in from the file it reads), and a host killed and booted
again comes back guarded; the database host's sshd answers ges alone.
"""

import base64
import json
import os
import time

import pytest

from quizstack import stack
from quizstack.check import Checker
from quizstack.check import guard as rows
from quizstack.deploy import render_guard as rg
from quizstack.deploy import storage
from quizstack.deploy.dbcluster import PATRONI_CONF
from quizstack.deploy.plan import build_plan
from quizstack.deploy.render import ETCD_CLIENT_PORT, PATRONI_API_PORT, PATRONI_API_USER

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")

GLUSTER = ["gluster", "--mode=script"]


@pytest.fixture
def checker(complete):
    lab, _ = complete
    return Checker(lab, build_plan(lab.topology))


def curl(lab, host, *args):
    """curl's HTTP status (000: no answer) and body, from a lab host."""
    done = lab.run(host, ["curl", "-s", "-m", "3", "-w", "\n%{http_code}", *args], check=False,
                   timeout=30)
    body, _, status = done.stdout.rpartition("\n")
    return status, body


def lifted(lab, host):
    """The guard's table deleted on `host`, for a `with` block; loaded again after."""
    class Lifted:
        def __enter__(self):
            lab.run(host, ["nft", "delete", "table", "inet", rg.TABLE])

        def __exit__(self, *exc):
            lab.run(host, ["nft", "-f", rg.CONF])
            assert lab.run(host, ["nft", "list", "table", "inet", rg.TABLE]).returncode == 0
    return Lifted()


def test_the_guard_lets_the_service_through_and_refuses_s1(complete, checker):
    _, result = complete
    # The first `up` loaded the guard before the app servers used the back end:
    # everything its checks did through it (uploads, the cluster, etcd) passed.
    crossing = [r for r in result.checks if r.group in ("storage", "database")]
    assert crossing and all(r.ok for r in crossing), [(r.name, r.detail) for r in crossing]
    found = rows.guard_checks(checker)
    assert [r.ok for r in found] == [True] * 4, [(r.name, r.detail) for r in found]


def test_only_ges_reaches_the_back_ends_sshd(complete):
    lab, _ = complete
    plan = build_plan(lab.topology)
    m = plan.management
    probe = ("import socket, sys\n"
             "try:\n"
             "    socket.create_connection((sys.argv[1], 22), timeout=2).close(); print('open')\n"
             "except OSError as exc:\n"
             "    print(type(exc).__name__)\n")
    target = str(m.address(plan.database_hosts[0]))
    seen = {h: lab.run(h, ["python3", "-c", probe, target]).stdout.strip() for h in ("s1", m.ges)}
    assert seen == {"s1": "TimeoutError", m.ges: "open"}, seen


def test_patroni_takes_a_change_only_with_its_login_and_from_a_database_host(complete):
    lab, _ = complete
    plan = build_plan(lab.topology)
    password = stack.secrets_of(lab)["patroni_api_password"]
    url = f"http://{plan.database_addresses[0]}:{PATRONI_API_PORT}/config"
    probe = json.dumps({"quizstack_guard_probe": "set"})
    undo = json.dumps({"quizstack_guard_probe": None})
    login = ["-u", f"{PATRONI_API_USER}:{password}"]
    # From s1: refused with the login or without (not a database host), GETs answered.
    assert curl(lab, "s1", "-X", "PATCH", "-d", probe, url)[0] == "403"
    assert curl(lab, "s1", *login, "-X", "PATCH", "-d", probe, url)[0] == "403"
    assert curl(lab, "s1", url)[0] == "200"
    # From the other database host: without the login refused (401), with it taken.
    other = plan.database_hosts[1]
    assert curl(lab, other, "-X", "PATCH", "-d", probe, url)[0] == "401"
    try:
        status, body = curl(lab, other, *login, "-X", "PATCH", "-d", probe, url)
        assert status == "200" and json.loads(body)["quizstack_guard_probe"] == "set"
    finally:
        assert curl(lab, other, *login, "-X", "PATCH", "-d", undo, url)[0] == "200"
    assert "quizstack_guard_probe" not in curl(lab, "s1", url)[1]


def test_etcd_takes_a_write_from_s1_only_without_the_guard(complete):
    lab, _ = complete
    plan = build_plan(lab.topology)
    witness, address = plan.consensus_hosts[-1]
    key = f"/v2/keys/quizstack-guard-test-{os.getpid()}"
    url = f"http://{address}:{ETCD_CLIENT_PORT}{key}"
    v3 = f"http://{address}:{ETCD_CLIENT_PORT}/v3/kv/put"
    put3 = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(b"x").decode()})
    assert curl(lab, "s1", "-X", "PUT", "-d", "value=x", url)[0] == "000"
    assert curl(lab, "s1", "-X", "POST", "-d", put3, v3)[0] == "000"
    with lifted(lab, witness):
        try:
            # The attack itself: without the guard, etcd takes it.
            assert curl(lab, "s1", "-X", "PUT", "-d", "value=x", url)[0] in ("200", "201")
        finally:
            lab.run(witness, ["curl", "-s", "-m", "3", "-X", "DELETE",
                              f"http://127.0.0.1:{ETCD_CLIENT_PORT}{key}"], check=False)
    assert curl(lab, "s1", "-X", "PUT", "-d", "value=x", url)[0] == "000"


def test_the_volume_refuses_a_host_that_is_not_an_app_server(complete, checker):
    lab, _ = complete
    plan = checker.plan
    first = plan.storage_hosts[0][0]
    nodes = [name for name, _ in plan.storage_hosts]
    allowed = ",".join(storage.volume_clients(plan))

    def attempt():
        (row,) = rows.volume_row(checker)
        return row

    guarded = attempt()
    assert guarded.ok and "no answer within" in guarded.detail, guarded.detail
    lifts = [lifted(lab, n) for n in nodes]
    for lift in lifts:
        lift.__enter__()
    try:
        # The guard lifted, auth.allow alone refuses at once.
        alone = attempt()
        assert alone.ok and "refused" in alone.detail, alone.detail
        lab.run(first, GLUSTER + ["volume", "reset", plan.volume, "auth.allow"])
        try:
            # Both lifted: the attack mounts the volume and writes to it.
            open_ = attempt()
            assert not open_.ok and "WROTE" in open_.detail, open_.detail
        finally:
            lab.run(first, GLUSTER + ["volume", "set", plan.volume, "auth.allow", allowed])
    finally:
        for lift in lifts:
            lift.__exit__(None, None, None)
    said = lab.run(first, GLUSTER + ["volume", "get", plan.volume, "auth.allow"]).stdout
    assert storage.option_value(said.splitlines(), "auth.allow") == allowed


def test_a_switchover_goes_through_and_s1_follows_the_new_primary(complete, checker):
    lab, _ = complete
    plan = checker.plan
    old, new = stack.db_switchover(lab, plan)
    assert old != new
    deadline = time.monotonic() + 20
    while True:
        row = rows.router_row(checker, "s1")
        if row.ok and f"{new} UP" in row.detail or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert row.ok and f"{new} UP" in row.detail, row.detail
    # patronictl on a database host logged in from the configuration file it read.
    listed = lab.run(new, ["patronictl", "-c", PATRONI_CONF, "list", "-f", "json"]).stdout
    assert {m["Member"]: m["Role"] for m in json.loads(listed)}[new] == "Leader"


def test_a_host_killed_and_booted_again_comes_back_guarded(complete):
    lab, _ = complete
    plan = build_plan(lab.topology)
    witness = plan.consensus_hosts[-1][0]
    # As a real machine would lose it in a power cut: the table goes with the kill.
    lab.run(witness, ["nft", "delete", "table", "inet", rg.TABLE])
    lab.inject("kill", witness)
    lab.heal(witness)
    deadline = time.monotonic() + 60
    endpoints = ",".join(f"http://{a}:{ETCD_CLIENT_PORT}" for _, a in plan.consensus_hosts)
    while True:
        table = lab.run(witness, ["nft", "list", "table", "inet", rg.TABLE], check=False)
        health = lab.run(plan.database_hosts[0], ["etcdctl", f"--endpoints={endpoints}",
                                                  "endpoint", "health"], check=False, timeout=30)
        healthy = (health.stdout + health.stderr).count("is healthy")
        if "policy drop" in table.stdout and healthy == len(plan.consensus_hosts):
            break
        assert time.monotonic() < deadline, (table, health.stdout + health.stderr)
        time.sleep(1)
    assert curl(lab, "s1", f"http://{plan.consensus_hosts[-1][1]}:{ETCD_CLIENT_PORT}/health")[0] \
        == "000"
