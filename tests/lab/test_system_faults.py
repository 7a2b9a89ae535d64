"""Freeze and kill of a full-system host, for real, as root, through cgroup v2 mostly.

A full system's keeper (system.py) lives in /quizstack/<lab>/<host> of the
v2 hierarchy with nspawn and the whole system below it; with cgroup v2 a
freeze stops that cgroup in place and a power cut kills it with one write to
cgroup.kill. QUIZSTACK_CGROUP=v2 makes the faults take that path even on a
hybrid machine (v1 controllers mounted, /sys/fs/cgroup/unified without
any), which is what a v2-only machine does by default. Left to choose, a
hybrid machine freezes a system with the v1 freezer instead, and its power
cut must thaw it to let the SIGKILLs act: that is checked too. One client and
one system, on one network; the lab is destroyed at the end, always.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from quizstack.lab import Lab, cgroups, state as statefile, system
from quizstack.topology import parse_scenario

LAYOUT = cgroups.detect()
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts, cgroups)"),
    pytest.mark.skipif(shutil.which("systemd-nspawn") is None, reason="full systems need systemd-nspawn"),
    pytest.mark.skipif(not (LAYOUT.v2_freeze and LAYOUT.v2_kill),
                       reason="no cgroup v2 hierarchy with cgroup.freeze and cgroup.kill here"),
]

RUN = os.getpid() % 100000
WEB = "10.9.1.2"
SCENARIO = """\
[scenario]
name = "sysfaults"
description = "a client and a whole Debian system, for faults through cgroup v2"

[networks.NET]
subnet = "10.9.1.0/24"

[hosts.c1]
roles = ["client"]
interfaces = [{ network = "NET", address = "10.9.1.11" }]

[hosts.web]
kind = "system"
roles = ["firewall", "loadbalancer", "web"]
interfaces = [{ network = "NET", address = "10.9.1.2" }]

[hosts.db]
roles = ["database", "storage"]
interfaces = [{ network = "NET", address = "10.9.1.3" }]

[storage]
replica = 1
"""


def wait_for(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def pings(lab, address):
    return lab.run("c1", ["ping", "-c1", "-W1", address], check=False).returncode == 0


def http_answers(lab, timeout=1):
    out = lab.run("c1", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", str(timeout),
                         f"http://{WEB}:8000/"], check=False).stdout
    return out == "200"


def serve(lab):
    """A small HTTP server on web, as a transient systemd unit (gone with a reboot)."""
    lab.run("web", ["sh", "-c", "mkdir -p /srv-test && echo hello > /srv-test/index.html"])
    lab.run("web", ["systemd-run", "--unit=qs-http", "python3", "-m", "http.server", "8000",
                    "--directory", "/srv-test"])
    wait_for(lambda: http_answers(lab), what="web's HTTP server")


def running(lab):
    return next(h for h in lab.status()["hosts"] if h["name"] == "web")["running"]


@pytest.fixture(scope="module")
def lab():
    root = tempfile.mkdtemp(prefix="quizstack-sysfaults-", dir="/srv")
    name = f"sf{RUN}"
    source = Path(root) / f"{name}.toml"
    source.write_text(SCENARIO)
    lab = Lab(name, topology=parse_scenario(SCENARIO, source=str(source)), state_root=root)
    try:
        lab.up()
        serve(lab)
        yield lab
    finally:
        try:
            lab.destroy()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    assert not os.path.exists(LAYOUT.v2 + system.cgroup_dir(name, "web"))
    assert not os.path.exists(f"{LAYOUT.v2}/quizstack/{name}")


@pytest.fixture
def healed(lab):
    """The lab, healed after the test whatever happened, with no cgroup left recorded."""
    yield lab
    lab.heal()
    st = statefile.load(lab.state_dir / "state.json")
    assert statefile.created(st, "cgroup") == []


@pytest.fixture
def keeper_cgroup(healed, forced_v2):
    """The system's keeper cgroup, where its faults go through cgroup v2 (QUIZSTACK_CGROUP=v2)."""
    return Path(forced_v2 + system.cgroup_dir(healed.name, "web"))


def test_a_full_system_freezes_in_its_keepers_cgroup_and_thaws(lab, keeper_cgroup):
    keeper = next(h for h in lab.status()["hosts"] if h["name"] == "web")["pid"]
    lab.inject("freeze", "web")
    assert "frozen 1" in (keeper_cgroup / "cgroup.events").read_text().splitlines()
    # Nothing of nspawn's moved: the keeper is where it was, no cgroup of the fault's own.
    assert str(keeper) in (keeper_cgroup / "cgroup.procs").read_text().split()
    assert not any(d.startswith(f"quizstack-{lab.name}-") for d in os.listdir(LAYOUT.v2))
    assert not http_answers(lab, timeout=1)
    assert pings(lab, WEB)            # the kernel still answers
    assert [h["kind"] for h in lab.heal()] == ["freeze"]
    assert "frozen 0" in (keeper_cgroup / "cgroup.events").read_text().splitlines()
    assert http_answers(lab)


def test_a_frozen_full_system_loses_its_power_through_cgroup_kill_and_boots_again(lab, keeper_cgroup):
    lab.inject("freeze", "web")
    fault = lab.inject("kill", "web")
    assert fault["t"] is not None and not running(lab)
    assert system.cgroup_pids(system.cgroup_dir(lab.name, "web")) == []
    assert not pings(lab, WEB)
    assert [h["kind"] for h in lab.heal()] == ["freeze", "kill"]
    assert running(lab) and "frozen 0" in (keeper_cgroup / "cgroup.events").read_text().splitlines()
    assert wait_for(lambda: pings(lab, WEB), what="web answering ping again")
    serve(lab)


@pytest.mark.needs_v1("freezer")
def test_a_full_system_frozen_by_the_v1_freezer_still_loses_its_power(healed, monkeypatch):
    lab = healed
    monkeypatch.delenv("QUIZSTACK_CGROUP", raising=False)
    freezer = Path(LAYOUT.v1["freezer"], f"quizstack-{lab.name}-web")
    lab.inject("freeze", "web")
    assert (freezer / "freezer.state").read_text() == "FROZEN\n"
    assert not http_answers(lab, timeout=1)
    started = time.monotonic()
    lab.inject("kill", "web")
    assert time.monotonic() - started < 5 and not running(lab)
    assert [h["kind"] for h in lab.heal()] == ["freeze", "kill"]
    assert not freezer.exists() and running(lab)
    assert wait_for(lambda: pings(lab, WEB), what="web answering ping again")
    serve(lab)
