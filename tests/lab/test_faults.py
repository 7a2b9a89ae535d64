"""Faults in a running lab, for real, as root: what a user of `quizstack chaos` notices.

A three-host scenario of its own (c1, web, db on one network) serves the
module: web runs a small HTTP server as a supervisor program, c1 is the
client that pings and fetches. Every test heals what it injected (the
fixture heals again, whatever happened), and the lab is destroyed at the end,
always. Whole-lab tests (destroy, stop) make their own labs.

The faults go where this machine's cgroup layout sends them: tests that
read the v1 freezer's files run where it is mounted, their twins through
cgroup v2 (QUIZSTACK_CGROUP=v2, the `forced_v2` fixture) wherever there is a
v2 hierarchy, and a fault the machine cannot apply (slow without a cpu
controller) is skipped with the sentence saying what is missing.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from quizstack.errors import LabError
from quizstack.lab import Lab, cgroups, plan, procs, state as statefile
from quizstack.topology import parse_scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, cgroups)")

RUN = os.getpid() % 100000
WEB = "10.9.0.2"
DB = "10.9.0.3"
SCENARIO = """\
[scenario]
name = "faults"
description = "three hosts on one network, for fault injection"

[networks.NET]
subnet = "10.9.0.0/24"

[hosts.c1]
roles = ["client"]
interfaces = [{ network = "NET", address = "10.9.0.11" }]

[hosts.web]
roles = ["firewall", "loadbalancer", "web"]
interfaces = [{ network = "NET", address = "10.9.0.2" }]

[hosts.db]
roles = ["database", "storage"]
interfaces = [{ network = "NET", address = "10.9.0.3" }]

[storage]
replica = 1
"""
HTTP_PROGRAM = """[program:http]
command=/usr/bin/python3 -m http.server 8000 --directory /srv-test
redirect_stderr=true
stdout_logfile=/var/log/http.log
"""
# Spins for at most 30 s, so that nothing outlives a broken test for long.
BUSY = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


def make_lab(state_root, prefix) -> Lab:
    name = f"{prefix}{RUN}"
    source = Path(state_root) / f"{name}.toml"
    source.write_text(SCENARIO)
    return Lab(name, topology=parse_scenario(SCENARIO, source=str(source)), state_root=state_root)


def wait_for(condition, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def pings(lab, host, address):
    return lab.run(host, ["ping", "-c1", "-W1", address], check=False).returncode == 0


def http_answers(lab, timeout=1):
    """True if web's HTTP server answers c1 within `timeout` seconds."""
    out = lab.run("c1", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", str(timeout),
                         f"http://{WEB}:8000/"], check=False).stdout
    return out == "200"


def program_state(lab, host="web", name="http"):
    out = lab.run(host, ["supervisorctl", "status", name], check=False).stdout.split()
    return out[1] if len(out) > 1 else " ".join(out)


def host_status(lab, host):
    return next(h for h in lab.status()["hosts"] if h["name"] == host)


def lab_cgroups(name):
    """Every cgroup of the freezer and cpu hierarchies and the v2 one named after lab `name`."""
    layout = cgroups.detect()
    hierarchies = [layout.v1.get("freezer"), layout.v1.get("cpu"), layout.v2]
    return [f"{h}/{d}" for h in dict.fromkeys(hierarchies) if h for d in os.listdir(h)
            if d.startswith(f"quizstack-{name}-")]


def v2_records(lab):
    st = statefile.load(lab.state_dir / "state.json")
    return [e for e in statefile.created(st, "cgroup") if e["controller"] == "v2"]


def v2_cgroup_of(pid):
    """A process's cgroup in the v2 hierarchy, as /proc shows it ("/" for the root)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return next(line[3:] for line in lines if line.startswith("0::"))


def fault_cgroups(name, faults):
    """The cgroups these (kind, host) faults of lab `name` make on this machine:
    one per v1 controller, one per host through v2 (its freeze and slow share it)."""
    layout = cgroups.detect()
    hierarchy = {kind: layout.v1[cgroups.V1_OF[kind]] if layout.mechanism(kind) == "v1" else layout.v2
                 for kind, _ in faults}
    return sorted({f"{hierarchy[kind]}/quizstack-{name}-{host}" for kind, host in faults})


def lab_processes(lab):
    inodes = {procs.netns_inode(plan.netns_path(n)) for n in plan.all_netns(lab.name, lab.topology)}
    found = procs.processes_in_netns({i for i in inodes if i})
    inits = [procs.record(h["pid"]) for h in lab.status()["hosts"] if h["pid"]]
    return [r for r in found + inits if r]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def state_root():
    root = tempfile.mkdtemp(prefix="quizstack-faults-", dir="/srv")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_lab(state_root):
    lab = make_lab(state_root, "f")
    try:
        lab.up()
        lab.run("web", ["sh", "-c", "mkdir -p /srv-test && echo hello > /srv-test/index.html"])
        lab.run("web", ["sh", "-c", "cat > /etc/supervisor/conf.d/http.conf && supervisorctl update"],
                input=HTTP_PROGRAM)
        wait_for(lambda: http_answers(lab), what="web's HTTP server")
        yield lab
    finally:
        lab.destroy()


@pytest.fixture
def lab(shared_lab):
    yield shared_lab
    shared_lab.heal()
    assert lab_cgroups(shared_lab.name) == []


# -- each fault, as the other hosts see it ---------------------------------------------


def test_kill_is_a_power_cut_and_heal_boots_the_host_with_its_files(lab):
    lab.run("web", ["sh", "-c", "mkdir -p /var/lib/qs-test && echo kept > /var/lib/qs-test/file"])
    fault = lab.inject("kill", "web")
    assert fault["kind"] == "kill" and fault["host"] == "web"
    assert fault["began"] <= fault["t"] <= time.time()
    web = host_status(lab, "web")
    assert not web["running"] and web["pid"] is None
    assert [f["kind"] for f in web["faults"]] == ["kill"]
    assert host_status(lab, "db")["faults"] == []
    assert not pings(lab, "c1", WEB) and not pings(lab, "db", WEB)
    with pytest.raises(LabError, match="cannot cut host web: it is not running"):
        lab.inject("cut", "web")

    healed = lab.heal()
    assert [(h["kind"], h["host"]) for h in healed] == [("kill", "web")]
    assert healed[0]["injected"] == fault["t"] < healed[0]["t"]
    assert host_status(lab, "web")["running"] and lab.faults() == []
    assert lab.run("web", ["cat", "/var/lib/qs-test/file"]).stdout == "kept\n"
    wait_for(lambda: program_state(lab) == "RUNNING", what="the program back")
    assert wait_for(lambda: http_answers(lab), what="the page back")
    assert pings(lab, "c1", WEB)


def test_cut_is_a_partition_and_the_processes_live_through_it(lab):
    pid = lab.run("web", ["supervisorctl", "pid", "http"]).stdout.strip()
    assert pings(lab, "c1", WEB)
    lab.inject("cut", "web")
    assert not pings(lab, "c1", WEB) and not pings(lab, "web", DB)
    assert host_status(lab, "web")["running"]
    # As with a cable pulled at the switch: web's eth0 is still up, with its
    # address, and has lost its carrier.
    link = lab.run("web", ["ip", "-o", "link", "show", "eth0"]).stdout
    assert {"UP", "NO-CARRIER"} <= set(link.split("<")[1].split(">")[0].split(","))
    assert f"{WEB}/24" in lab.run("web", ["ip", "-o", "-4", "addr", "show", "eth0"]).stdout
    assert [h["kind"] for h in lab.heal("web")] == ["cut"]
    assert pings(lab, "c1", WEB)
    assert lab.run("web", ["supervisorctl", "pid", "http"]).stdout.strip() == pid
    assert http_answers(lab)


@pytest.mark.needs_v1("freezer")
def test_freeze_is_a_hung_host_that_still_answers_ping(lab):
    freezer = Path(f"/sys/fs/cgroup/freezer/quizstack-{lab.name}-web")
    lab.inject("freeze", "web")
    assert (freezer / "freezer.state").read_text() == "FROZEN\n"
    assert not http_answers(lab, timeout=1)
    assert pings(lab, "c1", WEB)          # the kernel still answers
    assert host_status(lab, "web")["running"]
    assert [f["kind"] for f in host_status(lab, "web")["faults"]] == ["freeze"]
    assert [h["kind"] for h in lab.heal()] == ["freeze"]
    assert not freezer.exists()
    assert http_answers(lab)


@pytest.mark.needs_fault("slow")
def test_slow_gives_the_host_a_fifth_of_a_cpu(lab):
    busy = lab.run("web", ["sh", "-c", 'python3 -c "$1" >/dev/null 2>&1 & echo $!', "sh", BUSY]).stdout.strip()
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds():
        fields = lab.run("web", ["cat", f"/proc/{busy}/stat"]).stdout.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick      # utime + stime

    def share(seconds):
        c0, w0 = cpu_seconds(), time.monotonic()
        time.sleep(seconds)           # a measurement window, not a wait for readiness
        return (cpu_seconds() - c0) / (time.monotonic() - w0)

    try:
        fault = lab.inject("slow", "web", cpu=20)
        assert fault["cpu"] == 20
        slowed = share(1.5)
        lab.heal()
        healed = share(1.0)
    finally:
        lab.run("web", ["kill", busy], check=False)
    assert slowed < 0.35, slowed
    assert healed > 0.6, healed


def test_stop_stops_one_program_and_heal_starts_it(lab):
    lab.inject("stop", "web", service="http")
    assert program_state(lab) == "STOPPED"
    assert not http_answers(lab)
    assert [f.get("service") for f in lab.faults()] == ["http"]
    assert [h["kind"] for h in lab.heal()] == ["stop"]
    assert program_state(lab) == "RUNNING"
    assert http_answers(lab)


# -- the same faults through cgroup v2 (QUIZSTACK_CGROUP=v2) ------------------------------


def test_freeze_through_cgroup_v2_is_the_same_hung_host(lab, forced_v2):
    group = Path(forced_v2, f"quizstack-{lab.name}-web")
    init = host_status(lab, "web")["pid"]
    home = v2_cgroup_of(init)
    lab.inject("freeze", "web")
    assert "frozen 1" in (group / "cgroup.events").read_text().splitlines()
    assert str(init) in (group / "cgroup.procs").read_text().split()
    assert not Path(f"/sys/fs/cgroup/freezer/quizstack-{lab.name}-web").exists()
    assert [(e["fault"], e["path"], e["home"]) for e in v2_records(lab)] == [
        ("freeze", str(group), os.path.normpath(forced_v2 + home))]
    assert not http_answers(lab, timeout=1)
    assert pings(lab, "c1", WEB)          # the kernel still answers
    assert [h["kind"] for h in lab.heal()] == ["freeze"]
    assert not group.exists() and v2_records(lab) == []
    assert v2_cgroup_of(init) == home
    assert http_answers(lab)


def test_heal_through_cgroup_v2_puts_the_processes_back_where_they_were(lab, forced_v2):
    home = Path(forced_v2, f"qs-test-home-{RUN}")
    home.mkdir()
    inode = procs.netns_inode(plan.netns_path(plan.host_netns(lab.name, "web")))
    init = host_status(lab, "web")["pid"]
    try:
        for rec in procs.processes_in_netns({inode}):
            cgroups.attach(str(home), rec["pid"])
        lab.inject("freeze", "web")
        assert [e["home"] for e in v2_records(lab)] == [str(home)]
        assert (home / "cgroup.procs").read_text() == ""
        lab.heal()
        assert v2_cgroup_of(init) == f"/qs-test-home-{RUN}"
        assert http_answers(lab)
        # Its home gone while it was frozen: back to the root of the hierarchy.
        lab.inject("freeze", "web")
        home.rmdir()
        lab.heal()
        assert v2_cgroup_of(init) == "/"
        assert http_answers(lab)
    finally:
        if home.exists():
            for pid in cgroups.members(str(home)):
                cgroups.attach(forced_v2, pid)
            home.rmdir()


def test_kill_of_a_host_frozen_through_cgroup_v2_needs_no_thaw(lab, forced_v2):
    group = Path(forced_v2, f"quizstack-{lab.name}-web")
    lab.inject("freeze", "web")
    fault = lab.inject("kill", "web")
    assert fault["t"] is not None and not host_status(lab, "web")["running"]
    # SIGKILL went through the v2 freezer: the cgroup is still frozen, and empty.
    assert (group / "cgroup.freeze").read_text() == "1\n"
    assert (group / "cgroup.procs").read_text() == ""
    assert not pings(lab, "c1", WEB)
    assert [h["kind"] for h in lab.heal()] == ["freeze", "kill"]
    assert not group.exists() and host_status(lab, "web")["running"]
    wait_for(lambda: program_state(lab) == "RUNNING", what="the program back")
    assert wait_for(lambda: http_answers(lab), what="the page back")


@pytest.mark.needs_v1("cpu")
def test_freeze_through_v2_and_slow_through_v1_combine(lab, forced_v2, monkeypatch):
    monkeypatch.delenv("QUIZSTACK_CGROUP")
    lab.inject("slow", "web", cpu=50)
    monkeypatch.setenv("QUIZSTACK_CGROUP", "v2")
    lab.inject("freeze", "web")
    assert len(lab_cgroups(lab.name)) == 2
    assert not http_answers(lab, timeout=1)
    assert [h["kind"] for h in lab.heal()] == ["freeze", "slow"]
    assert lab_cgroups(lab.name) == [] and http_answers(lab)


def test_slow_through_cgroup_v2_without_its_cpu_controller_is_refused_with_what_is_missing(lab, forced_v2):
    layout = cgroups.detect()
    if "cpu" in layout.v2_controllers:
        pytest.skip("this machine's v2 hierarchy has the cpu controller: slow works through it")
    state_file = lab.state_dir / "state.json"
    before = state_file.read_text()
    with pytest.raises(LabError) as info:
        lab.inject("slow", "web", cpu=20)
    offered = ", ".join(sorted(layout.v2_controllers)) or "none"
    assert str(info.value).startswith(
        f"QUIZSTACK_CGROUP=v2 chooses cgroup v2, and fault slow needs cpu in the cgroup v2 root's "
        f"cgroup.controllers ({forced_v2}/cgroup.controllers: {offered})")
    assert state_file.read_text() == before and lab.faults() == []


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda lab: lab.inject("kill", "nohost"), r"no host 'nohost' \(hosts: c1, web, db\)"),
    (lambda lab: lab.inject("melt", "web"), r"unknown fault 'melt' \(faults: kill, cut, freeze, slow, stop\)"),
    (lambda lab: lab.inject("slow", "web", cpu=0), r"bad CPU percentage 0: a whole number from 1 to 100"),
    (lambda lab: lab.inject("slow", "web", cpu=101), r"bad CPU percentage 101"),
    (lambda lab: lab.inject("slow", "web"), r"fault slow needs cpu"),
    (lambda lab: lab.inject("cut", "web", cpu=5), r"fault cut takes no cpu"),
    (lambda lab: lab.inject("stop", "web", service="nope"), r"host web has no program 'nope' \(programs: http\)"),
    (lambda lab: lab.inject("stop", "db", service="http"), r"host db has no program 'http' \(programs: none\)"),
    (lambda lab: lab.heal("nohost"), r"no host 'nohost'"),
])
def test_bad_input_is_one_clear_line_and_changes_nothing(lab, call, message):
    state_file = lab.state_dir / "state.json"
    before = state_file.read_text()
    with pytest.raises(LabError, match=message) as info:
        call(lab)
    assert "\n" not in str(info.value)
    assert state_file.read_text() == before
    assert lab.faults() == [] and lab_cgroups(lab.name) == []


@pytest.mark.needs_fault("freeze")
def test_the_same_fault_twice_is_refused(lab):
    lab.inject("freeze", "db")
    with pytest.raises(LabError, match=r"host db already has a freeze fault; heal it first"):
        lab.inject("freeze", "db")
    with pytest.raises(LabError, match=r"host db is frozen; heal it before stopping"):
        lab.inject("stop", "db", service="x")
    assert [(f["kind"], f["host"]) for f in lab.faults()] == [("freeze", "db")]
    # Other faults of the same host, and the same fault elsewhere, are fine.
    lab.inject("cut", "db")
    lab.inject("freeze", "c1")
    assert [h["kind"] for h in lab.heal("db")] == ["freeze", "cut"]
    assert [(f["kind"], f["host"]) for f in lab.faults()] == [("freeze", "c1")]


# -- the lab's commands repair faults ----------------------------------------------------------


@pytest.mark.needs_fault("freeze")
def test_up_heals_every_fault(lab):
    lab.inject("cut", "c1")
    lab.inject("freeze", "web")
    lab.inject("kill", "db")
    assert len(lab.faults()) == 3
    messages = []
    lab.up(progress=messages.append)
    assert lab.faults() == [] and lab_cgroups(lab.name) == []
    assert "fault: kill db healed" in messages
    assert all(h["running"] and h["faults"] == [] for h in lab.status()["hosts"])
    assert pings(lab, "c1", DB)
    assert http_answers(lab)


@pytest.mark.needs_v1("freezer")
def test_an_interrupted_freeze_is_repaired_by_heal(lab):
    state_file = lab.state_dir / "state.json"
    # As a kill -9 in the middle of `freeze web` leaves things: the fault and its
    # cgroup recorded (as earlier versions wrote it), web's processes moved in
    # and frozen, but no `t` yet.
    freezer = f"/sys/fs/cgroup/freezer/quizstack-{lab.name}-web"
    st = statefile.load(state_file)
    st["faults"].append({"kind": "freeze", "host": "web", "began": time.time(), "t": None})
    st["created"].append({"kind": "cgroup", "controller": "freezer", "path": freezer})
    statefile.save(state_file, st)
    os.mkdir(freezer)
    inode = procs.netns_inode(plan.netns_path(plan.host_netns(lab.name, "web")))
    for rec in procs.processes_in_netns({inode}):
        Path(freezer, "cgroup.procs").write_text(str(rec["pid"]))
    Path(freezer, "freezer.state").write_text("FROZEN")
    wait_for(lambda: Path(freezer, "freezer.state").read_text() == "FROZEN\n", what="frozen")
    assert not http_answers(lab)
    assert [(f["kind"], f["t"]) for f in lab.faults()] == [("freeze", None)]
    assert [h["kind"] for h in lab.heal()] == ["freeze"]
    assert not os.path.exists(freezer)
    assert http_answers(lab)


def test_an_interrupted_freeze_through_cgroup_v2_is_repaired_by_heal(lab, forced_v2):
    state_file = lab.state_dir / "state.json"
    # The same through v2: web's processes moved out of their own cgroup into
    # the fault's and frozen, the record naming where they came from.
    group = Path(forced_v2, f"quizstack-{lab.name}-web")
    init = host_status(lab, "web")["pid"]
    home = v2_cgroup_of(init)
    st = statefile.load(state_file)
    st["faults"].append({"kind": "freeze", "host": "web", "began": time.time(), "t": None})
    st["created"].append({"kind": "cgroup", "controller": "v2", "path": str(group), "host": "web",
                          "fault": "freeze", "home": os.path.normpath(forced_v2 + home)})
    statefile.save(state_file, st)
    group.mkdir()
    inode = procs.netns_inode(plan.netns_path(plan.host_netns(lab.name, "web")))
    for rec in procs.processes_in_netns({inode}):
        cgroups.attach(str(group), rec["pid"])
    (group / "cgroup.freeze").write_text("1")
    wait_for(lambda: "frozen 1" in (group / "cgroup.events").read_text().splitlines(), what="frozen")
    assert not http_answers(lab)
    assert [(f["kind"], f["t"]) for f in lab.faults()] == [("freeze", None)]
    assert [h["kind"] for h in lab.heal()] == ["freeze"]
    assert not group.exists() and v2_records(lab) == []
    assert v2_cgroup_of(init) == home
    assert http_answers(lab)


def test_an_interrupted_kill_is_repaired_by_up(lab):
    state_file = lab.state_dir / "state.json"
    # `kill db` interrupted after the init died: the next up boots it.
    st = statefile.load(state_file)
    st["faults"].append({"kind": "kill", "host": "db", "began": time.time(), "t": None})
    statefile.save(state_file, st)
    subprocess.run(["ip", "-n", plan.lab_netns(lab.name), "link", "set", "db-0", "down"], check=True)
    init = procs.record(host_status(lab, "db")["pid"])
    assert procs.kill_all([init]) == []
    assert not host_status(lab, "db")["running"]
    lab.up()
    assert lab.faults() == [] and host_status(lab, "db")["running"]
    assert pings(lab, "c1", DB)


@pytest.mark.needs_fault("freeze", "slow")
def test_stop_with_faults_powers_off_and_start_brings_all_back(state_root):
    lab = make_lab(state_root, "fs")
    try:
        lab.up()
        lab.inject("freeze", "web")
        lab.inject("slow", "c1", cpu=10)
        lab.inject("cut", "db")
        lab.inject("kill", "c1")
        lab.stop()
        assert not any(h["running"] for h in lab.status()["hosts"])
        assert lab.faults() == [] and lab_cgroups(lab.name) == []
        lab.start()
        assert all(h["running"] for h in lab.status()["hosts"])
        assert pings(lab, "c1", DB)
    finally:
        lab.destroy()


def test_destroy_with_hosts_frozen_through_cgroup_v2_leaves_nothing(state_root, forced_v2):
    lab = make_lab(state_root, "fv")
    try:
        lab.up()
        lab.open_forward(port=free_port())
        lab.inject("freeze", "c1")
        lab.inject("freeze", "web")
        lab.inject("cut", "db")
        assert sorted(lab_cgroups(lab.name)) == [f"{forced_v2}/quizstack-{lab.name}-{h}" for h in ("c1", "web")]
        during = lab_processes(lab)
    finally:
        lab.destroy()
    assert lab_cgroups(lab.name) == []
    assert [r for r in during if procs.alive(r)] == []
    assert not lab.state_dir.exists()


@pytest.mark.needs_fault("freeze", "slow")
def test_destroy_with_frozen_and_slowed_hosts_leaves_nothing(state_root):
    lab = make_lab(state_root, "fd")
    try:
        lab.up()
        # The forward lives in c1's network namespace: it freezes with c1.
        lab.open_forward(port=free_port())
        lab.inject("freeze", "c1")
        lab.inject("slow", "web", cpu=10)
        lab.inject("freeze", "web")
        lab.inject("cut", "db")
        # v1: c1 and web frozen in the freezer, web slowed in cpu; v2: one cgroup a host.
        assert sorted(lab_cgroups(lab.name)) == fault_cgroups(
            lab.name, [("freeze", "c1"), ("slow", "web"), ("freeze", "web")])
        during = lab_processes(lab)
    finally:
        lab.destroy()
    assert lab_cgroups(lab.name) == []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"qs-{lab.name}" not in netns
    assert [r for r in during if procs.alive(r)] == []
    assert not lab.state_dir.exists()
