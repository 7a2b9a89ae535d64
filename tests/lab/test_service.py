"""The deployed service, end to end, as root: up, check, idempotence, stop/start.

One lab is brought up for the module (a unique name, a temporary state root)
and destroyed at the end; each test asserts something a user or an examiner
would notice.
"""

import json
import os
import sys
import time

import pytest

from quizstack import stack
from quizstack.check import Checker
from quizstack.deploy.plan import build_plan
from quizstack.errors import ScenarioError
from quizstack.topology import load_scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")


@pytest.fixture(scope="module")
def service(deployed):
    return deployed


@pytest.fixture
def state_root(tmp_path, monkeypatch):
    root = tmp_path / "state"
    root.mkdir()
    monkeypatch.setenv("QUIZSTACK_STATE_ROOT", str(root))
    return root


def rows(results):
    return {(r.group, r.name): r for r in results}


def test_up_from_nothing_passes_every_check(service):
    _, first, _ = service
    failed = [f"{r.group}: {r.name}: {r.detail}" for r in first.checks if not r.ok]
    assert first.checks and not failed


def test_firewall_rows(service):
    _, first, _ = service
    firewall = [r for r in first.checks if r.group == "firewall"]
    # A port scan and a ping sweep from each of the two clients.
    assert len(firewall) == 4 and all(r.ok for r in firewall)
    assert all("open: 10.2.2.2:80" == r.detail for r in firewall if "port scan" in r.name)


def test_balancing_row_is_ten_ten_ten(service):
    _, first, _ = service
    (row,) = [r for r in first.checks if r.group == "balancing"]
    assert row.ok and row.detail.startswith("s1/s2/s3: 10/10/10")


def test_storage_and_database_rows(service):
    _, first, _ = service
    groups = [r.group for r in first.checks if r.ok]
    assert groups.count("storage") == 2
    assert groups.count("database") == 3


def test_second_up_changes_nothing_and_is_fast(service):
    lab, first, _ = service
    started = time.monotonic()
    again = stack.up(lab, port=first.url.rsplit(":", 1)[1].strip("/"), run_checks=False)
    seconds = time.monotonic() - started
    assert again.deployed.changed == []
    assert all(not phase.changed for phase in again.deployed.phases)
    # A fraction of the first (both without the checks); a ratio, the machine is noisy.
    assert seconds < 0.75 * (first.seconds["lab"] + first.seconds["deploy"])


def test_second_up_on_the_command_line_says_no_change_and_where_the_service_is(service, capsys):
    from quizstack import cli

    lab, first, _ = service
    port = first.url.rsplit(":", 1)[1].strip("/")
    assert cli.main(["up", "--lab", lab.name, "--no-check", "--port", port]) == 0
    out = capsys.readouterr().out
    assert "deploy: no change" in out
    assert out.rstrip().endswith(f"QUIZ is served at http://127.0.0.1:{port}/ "
                                 "(through the firewall, as a client on LAN1)")


def test_secrets_are_private_to_the_state(service):
    lab, _, _ = service
    path = lab.state_dir / "secrets" / "secrets.json"
    assert path.stat().st_mode & 0o777 == 0o600
    password = json.loads(path.read_text())["database_password"]
    hba = lab.run("bbdd", ["sh", "-c", "cat /etc/postgresql/*/quiz/pg_hba.conf"]).stdout
    assert password not in hba and "trust" not in hba


@pytest.mark.parametrize("leak", [
    # One more forwarded port, to a server that answers it with a reset.
    ["nft", "insert", "rule", "inet", "quizstack", "forward", "iifname", "eth0",
     "ip", "daddr", "10.2.3.12", "tcp", "dport", "31337", "accept"],
    # Everything forwarded but pings: the targets answer in a flood.
    ["sh", "-c", "nft flush ruleset && nft add table inet leak && nft add chain inet leak f "
     "'{ type filter hook forward priority 0; policy accept; }' && "
     "nft add rule inet leak f icmp type echo-request drop"],
], ids=["one-port", "wide-open"])
def test_the_check_catches_a_leaky_firewall(service, leak):
    lab, _, _ = service
    checker = Checker(lab, build_plan(lab.topology))
    lab.run("fw", leak)
    try:
        scans = [r for r in checker.firewall(["c1"]) if "port scan" in r.name]
    finally:
        # The host's init reloads the deployed ruleset (flush ruleset first).
        lab.run("fw", ["supervisorctl", "start", "nftables"])
        lab.run("fw", ["sh", "-c", "for i in $(seq 100); do "
                       "if nft list table inet quizstack >/dev/null 2>&1 && "
                       "! nft list ruleset | grep -q -e 'table inet leak' -e 31337; "
                       "then exit 0; fi; sleep 0.1; done; exit 1"])
    assert scans and not scans[0].ok
    assert "10.2.3.12" in scans[0].detail
    assert all(r.ok for r in checker.firewall(["c1"]))


def test_a_server_that_dies_costs_no_failed_request(service):
    lab, _, _ = service
    plan = build_plan(lab.topology)
    base = f"http://{plan.lb_address}:{plan.port}"
    # s2 goes away; HAProxy's health checks need a moment or two to notice.
    lab.run("s2", ["supervisorctl", "stop", "quiz"])
    try:
        seen = json.loads(lab.run("c1", [sys.executable, "-m", "quizstack.check.client",
                                         "balance", base, "30"]).stdout)
    finally:
        lab.run("s2", ["supervisorctl", "start", "quiz"])
    assert seen["statuses"] == {"200": 30}
    assert "s2" not in seen["servers"]
    # And the service heals: the next deployment finds s2 healthy and UP again.
    assert stack.deploy_lab(lab).changed == []
    again = json.loads(lab.run("c1", [sys.executable, "-m", "quizstack.check.client",
                                      "balance", base, "30"]).stdout)
    assert again["servers"] == {"s1": 10, "s2": 10, "s3": 10}


def test_a_quiz_and_its_image_survive_stop_and_start(service):
    lab, _, _ = service
    plan = build_plan(lab.topology)
    base = f"http://{plan.lb_address}:{plan.port}"
    # pfinal is a teaching setup: the seed's pepe/5678 (the password in the environment).
    made = json.loads(lab.run("c1", [sys.executable, "-m", "quizstack.check.client", "upload",
                                     base, "pepe", "3"], env={"QUIZSTACK_PASSWORD": "5678"}).stdout)
    lab.stop()
    lab.start()
    # The hosts' inits bring every service back: a deployment only waits for them.
    assert stack.deploy_lab(lab).changed == []
    page = lab.run("c1", [sys.executable, "-c",
                          "import sys,urllib.request;"
                          f"print(urllib.request.urlopen('{base}/quizzes/{made['quiz']}',timeout=10).read().decode())"])
    assert made["question"] in page.stdout
    image = lab.run("c1", [sys.executable, "-c",
                           "import urllib.request;"
                           f"print(len(urllib.request.urlopen('{base}/uploads/{made['image']}',timeout=10).read()))"])
    assert int(image.stdout) > 0


def test_a_bad_scenario_fails_before_changing_anything(state_root, tmp_path):
    from quizstack.lab import Lab

    text = load_scenario("pfinal").source
    with open(text) as f:
        source = f.read()
    bad = tmp_path / "bad.toml"
    bad.write_text(source.replace('address = "10.2.4.23"', 'address = "10.2.4.22"'))
    before = sorted(os.listdir(state_root))
    with pytest.raises(ScenarioError) as error:
        stack.up(Lab("badsc", topology=load_scenario(str(bad))))
    assert "10.2.4.22" in str(error.value)
    assert sorted(os.listdir(state_root)) == before
