"""Balancing by load, on a real lab: pfinal with `balance = "load"`.

The agents answer what HAProxy shows; a server whose volume is gone turns
DOWN by its agent's word, one whose app stops answering is drained by it,
and both come back; a server slowed to 20 % of a CPU gets fewer requests
than the others under a short load. As root only, like every lab test.
"""

import os
import shutil
import socket
import tempfile
import time

import pytest

from quizstack.check import parse_haproxy_agents
from quizstack.deploy import render

AGENT = "/var/lib/quizstack/probes/agent.py"
SOCKET = "/run/haproxy/admin.sock"
DRAINED = 0x08          # srv_admin_state: forced drain (the agent's `drain`)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def balanced():
    """(lab, plan, the UpResult) of pfinal balancing by load, destroyed at the end."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, mounts)")
    from quizstack import stack
    from quizstack.deploy.plan import build_plan
    from quizstack.lab import Lab
    from quizstack.topology import load_scenario

    os.makedirs("/srv/quizstack-tests", exist_ok=True)
    root = tempfile.mkdtemp(prefix="balance-", dir="/srv/quizstack-tests")
    previous = os.environ.get("QUIZSTACK_STATE_ROOT")
    os.environ["QUIZSTACK_STATE_ROOT"] = root
    text = open(load_scenario("pfinal").source).read()
    scenario = os.path.join(root, "pfinal-load.toml")
    with open(scenario, "w") as f:
        f.write(text.replace("[service]\nport = 80\n", '[service]\nport = 80\nbalance = "load"\n'))
    lab = Lab(f"bl{os.getpid() % 100000}", topology=load_scenario(scenario))
    try:
        result = stack.up(lab, port=free_port())
        yield lab, build_plan(lab.topology), result
    finally:
        lab.destroy()
        shutil.rmtree(root, ignore_errors=True)
        if previous is None:
            os.environ.pop("QUIZSTACK_STATE_ROOT", None)
        else:
            os.environ["QUIZSTACK_STATE_ROOT"] = previous


def haproxy(lab, lb, command):
    return lab.run(lb, ["sh", "-c", f"echo '{command}' | nc -U {SOCKET}"], timeout=10).stdout


def servers(lab, lb):
    """{server: {column: value}} of quiz_servers in HAProxy's `show stat`."""
    lines = haproxy(lab, lb, "show stat").splitlines()
    columns = lines[0][2:].split(",")
    rows = (dict(zip(columns, line.split(","))) for line in lines[1:])
    return {r["svname"]: r for r in rows
            if r.get("pxname") == "quiz_servers" and r["svname"] not in ("FRONTEND", "BACKEND")}


def server_state(lab, lb, server):
    """(status, admin state, the agent's last words) of one server, as HAProxy has them."""
    row = servers(lab, lb)[server]
    admin = next(int(line.split()[6]) for line in
                 haproxy(lab, lb, "show servers state quiz_servers").splitlines()
                 if len(line.split()) > 6 and line.split()[3] == server)
    return row["status"], admin, row["last_agt"]


def wait_for(lab, lb, server, condition, what, timeout=20):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = server_state(lab, lb, server)
        if condition(*seen):
            return seen
        time.sleep(0.3)
    raise AssertionError(f"{server} not {what} within {timeout} s; HAProxy has {seen}")


def back_in_rotation(lab, lb, server):
    wait_for(lab, lb, server, lambda status, admin, said: status == "UP" and not admin & DRAINED
             and said.startswith("via agent : up"), "back UP", timeout=30)


def test_the_checks_pass_and_name_the_policy(balanced):
    _, _, result = balanced
    failed = [f"{r.name}: {r.detail}" for r in result.checks if not r.ok]
    assert not failed
    row = next(r for r in result.checks if r.group == "balancing")
    assert "(balance load)" in row.name and "agents: s1 up" in row.detail


def test_haproxy_hears_what_each_agent_answers(balanced):
    lab, plan, _ = balanced
    agents = parse_haproxy_agents(haproxy(lab, plan.lb_hosts[0], "show stat"), "quiz_servers")
    for b in plan.backends:
        answer = lab.run(b.name, ["python3", AGENT, "--ask", f"{b.address}:{render.AGENT_PORT}"]).stdout
        status, weight, said = agents[b.name]
        assert status == "L7OK", agents
        assert answer.startswith("up ") and said.startswith("via agent : up"), (answer, said)
        assert int(weight) > 0


def test_a_server_without_its_volume_is_down_by_its_agent_and_comes_back(balanced):
    lab, plan, _ = balanced
    lb = plan.lb_hosts[0]
    lab.run("s2", ["supervisorctl", "stop", "nas-mount"])
    try:
        status, _, said = wait_for(lab, lb, "s2", lambda status, admin, said: "DOWN" in status
                                   and said.startswith("via agent : down"), "DOWN by its agent")
        assert "not mounted" in said
    finally:
        lab.run("s2", ["supervisorctl", "start", "nas-mount"])
    back_in_rotation(lab, lb, "s2")


def test_a_server_whose_app_stops_answering_is_drained_by_its_agent_and_comes_back(balanced):
    lab, plan, _ = balanced
    lb = plan.lb_hosts[0]
    # gunicorn's master and workers stopped (by PID): the kernel still queues
    # connections, nothing answers them — an app server swamped.
    pids = lab.run("s2", ["sh", "-c", "m=$(supervisorctl pid quiz); echo $m $(ps -o pid= --ppid $m)"]
                   ).stdout.split()
    assert pids and all(p.isdigit() for p in pids)
    lab.run("s2", ["kill", "-STOP", *pids])
    try:
        wait_for(lab, lb, "s2", lambda status, admin, said: admin & DRAINED, "drained")
    finally:
        lab.run("s2", ["kill", "-CONT", *pids])
    back_in_rotation(lab, lb, "s2")


@pytest.mark.needs_fault("slow")
def test_a_slowed_server_gets_fewer_requests(balanced):
    lab, plan, _ = balanced
    lb = plan.lb_hosts[0]

    def counts():
        return {name: int(row["req_tot"]) for name, row in servers(lab, lb).items()}

    lab.inject("slow", "s2", cpu=20)
    try:
        # Its agent weighs in the quota: 20 % of one of the machine's CPUs.
        deadline = time.monotonic() + 10
        while int(servers(lab, lb)["s2"]["weight"]) > 20 and time.monotonic() < deadline:
            time.sleep(0.3)
        before = counts()
        lab.run(plan.clients[0], ["wrk", "-t1", "-c12", "-d4s", "--timeout", "10s",
                                  f"http://{plan.lb_address}:{plan.port}/quizzes"], timeout=60)
        after = counts()
        weights = {name: row["weight"] for name, row in servers(lab, lb).items()}
    finally:
        lab.heal("s2")
    got = {s: after[s] - before[s] for s in after}
    assert got["s2"] < 0.5 * min(got["s1"], got["s3"]), (got, weights)
    back_in_rotation(lab, lb, "s2")
