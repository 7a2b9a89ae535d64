"""The lab, for real, as root: hosts, networks, lifecycle, cleanup, forward.

One pfinal lab serves the module (a name unique to this run, a state root of
its own, destroyed in the fixture's finalizer); tests that create or destroy
whole labs make their own. Each test asserts something a user would notice:
who can ping whom, what a host sees, what survives stop/start, what destroy
leaves behind (nothing).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from quizstack import debian
from quizstack.lab import Lab, plan, procs
from quizstack.topology import load_scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")

QUIZSTACK = [sys.executable, "-m", "quizstack.cli"]
RUN = os.getpid() % 100000


def lab_name(prefix):
    return f"{prefix}{RUN}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines(argv):
    return set(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines())


def machine_view():
    """What the machine's root namespaces show: namespaces, links, addresses, routes, mounts."""
    with open("/proc/self/mounts") as f:
        mounts = f.read().splitlines()
    return {
        "netns": {l.split()[0] for l in lines(["ip", "netns", "list"]) if l.strip()},
        "links": {l.split(":")[1].strip().split("@")[0] for l in lines(["ip", "-o", "link"])},
        "addresses": lines(["ip", "-o", "addr"]),
        "routes": lines(["ip", "route"]),
        "mounts": mounts,
    }


def of_lab(view, name, state_root):
    """The parts of a machine view that belong to lab `name`: other labs (other
    engineers', other tests') may come and go meanwhile."""
    prefix = f"qs-{name}"
    return {
        "netns": {n for n in view["netns"] if n == prefix or n.startswith(prefix + "-")},
        "mounts": [m for m in view["mounts"]
                   if f"/{prefix} " in m or f"/{prefix}-" in m or str(state_root) + "/" + name in m],
    }


def lab_processes(lab):
    """Every process living in one of the lab's network namespaces, plus the inits."""
    inodes = {procs.netns_inode(plan.netns_path(n)) for n in plan.all_netns(lab.name, lab.topology)}
    found = procs.processes_in_netns({i for i in inodes if i})
    inits = [procs.record(h["pid"]) for h in lab.status()["hosts"] if h["pid"]]
    return [r for r in found + inits if r]


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


@pytest.fixture(scope="module")
def state_root():
    root = tempfile.mkdtemp(prefix="quizstack-test-", dir="/srv")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def before():
    return machine_view()


@pytest.fixture(scope="module")
def lab(state_root, before):
    lab = Lab(lab_name("t"), topology=load_scenario("pfinal"), state_root=state_root)
    try:
        lab.up()
        yield lab
    finally:
        lab.destroy()


def pings(lab, host, address):
    return lab.run(host, ["ping", "-c1", "-W1", address], check=False).returncode == 0


# -- the connectivity matrix ------------------------------------------------------


def test_clients_reach_the_firewall_and_the_load_balancer(lab):
    assert pings(lab, "c1", "10.2.1.1")
    assert pings(lab, "c1", "10.2.2.2")
    assert pings(lab, "c2", "10.2.2.2")


def test_clients_reach_the_servers_through_both_routers(lab):
    assert pings(lab, "c1", "10.2.3.11")


def test_servers_reach_database_and_storage(lab):
    assert pings(lab, "s1", "10.2.4.31")
    assert pings(lab, "s1", "10.2.4.21")
    assert pings(lab, "s3", "10.2.4.23")


def test_storage_cannot_reach_the_clients(lab):
    result = lab.run("nas1", ["ping", "-c1", "-W1", "10.2.1.11"], check=False)
    assert result.returncode != 0
    assert not pings(lab, "bbdd", "10.2.1.11")


def test_no_host_has_a_route_out(lab):
    for host in lab.topology.hosts:
        routes = lab.run(host, ["ip", "-o", "route"]).stdout
        assert "default" not in routes, host
        assert all(r.startswith("10.2.") for r in routes.splitlines()), (host, routes)
        out = lab.run(host, ["ip", "route", "get", "192.0.2.1"], check=False)
        assert out.returncode != 0 and "unreachable" in out.stderr, host


def test_the_machine_gets_no_lab_address_route_or_link(lab, before):
    now = machine_view()
    assert now["addresses"] == before["addresses"]
    assert now["routes"] == before["routes"]
    assert not any(r.startswith("10.2.") for r in now["routes"])
    assert now["links"] == before["links"]
    assert of_lab(now, lab.name, "-")["netns"] == set(plan.all_netns(lab.name, lab.topology))


def test_bridged_frames_skip_netfilter(lab):
    netns = plan.netns_path(plan.lab_netns(lab.name))
    path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    out = subprocess.run(["nsenter", f"--net={netns}", "sh", "-c", f"cat {path} 2>/dev/null || echo absent"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out in ("0", "absent")


def test_hosts_speak_ipv4_only(lab):
    out = lab.run("c1", ["ip", "-o", "-6", "addr"]).stdout
    assert [l.split()[3] for l in out.splitlines()] == ["::1/128"]


def test_forwarding_where_the_scenario_says(lab):
    for host in lab.topology.hosts.values():
        value = lab.run(host.name, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip()
        assert value == ("1" if host.forward else "0"), host.name


def test_interfaces_and_addresses(lab):
    out = lab.run("s1", ["ip", "-o", "-4", "addr"]).stdout
    found = {(l.split()[1], l.split()[3]) for l in out.splitlines()}
    assert found == {("lo", "127.0.0.1/8"), ("eth0", "10.2.3.11/24"), ("eth1", "10.2.4.11/24")}
    status = {h["name"]: h for h in lab.status()["hosts"]}
    assert all(h["running"] for h in status.values())
    assert status["lb"]["interfaces"] == [
        {"name": "eth0", "network": "LAN2", "address": "10.2.2.2/24"},
        {"name": "eth1", "network": "LAN3", "address": "10.2.3.1/24"},
    ]


# -- what a host sees ----------------------------------------------------------------


def test_each_host_has_its_own_name(lab):
    for host in lab.topology.hosts:
        assert lab.run(host, ["hostname"]).stdout.strip() == host
        assert lab.run(host, ["cat", "/etc/hostname"]).stdout.strip() == host


def test_etc_hosts_names_every_lab_host(lab):
    out = lab.run("s2", ["getent", "hosts", "bbdd", "nas3", "fw-lan2"]).stdout
    assert "10.2.4.31" in out and "10.2.4.23" in out and "10.2.2.1" in out


def test_each_host_has_its_own_etc(lab):
    marker = f"/etc/quizstack-test-{RUN}"
    lab.run("s1", ["sh", "-c", f"echo s1 > {marker}"])
    assert lab.run("s1", ["cat", marker]).stdout == "s1\n"
    assert lab.run("s2", ["test", "-e", marker], check=False).returncode == 1
    assert not os.path.exists(marker)


def test_each_host_has_its_own_processes(lab):
    lab.run("s2", ["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
    ps = lab.run("s1", ["ps", "-e", "-o", "pid=,comm="]).stdout.split("\n")
    rows = [l.split() for l in ps if l.strip()]
    assert rows[0] == ["1", "supervisord"]
    assert not any(r[1] == "sleep" for r in rows)
    assert len(rows) < 10       # supervisord, nsenter's child, ps: no machine processes
    assert "sleep" in lab.run("s2", ["ps", "-e", "-o", "comm="]).stdout


def test_supervisorctl_works_inside_and_tmp_is_sticky(lab):
    assert lab.run("bbdd", ["supervisorctl", "pid"]).stdout.strip() == "1"
    assert lab.run("bbdd", ["stat", "-c", "%a", "/tmp"]).stdout.strip() == "1777"


def test_a_failing_command_names_host_and_command(lab):
    from quizstack.errors import CommandError

    with pytest.raises(CommandError) as info:
        lab.run("c2", ["sh", "-c", "echo oops >&2; exit 3"])
    assert info.value.returncode == 3
    assert str(info.value).startswith(f"{lab.name}/c2: `sh -c echo oops >&2; exit 3` exited 3: oops")


def test_exec_command_exit_status(lab, state_root):
    env = dict(os.environ, QUIZSTACK_STATE_ROOT=state_root)
    proc = subprocess.run(QUIZSTACK + ["--lab", lab.name, "exec", "c1", "--", "sh", "-c", "hostname; exit 7"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 7 and proc.stdout == "c1\n"


def test_status_json(lab, state_root):
    env = dict(os.environ, QUIZSTACK_STATE_ROOT=state_root)
    out = subprocess.run(QUIZSTACK + ["status", "--json", "--lab", lab.name],
                         capture_output=True, text=True, env=env, check=True).stdout
    data = json.loads(out)
    assert [h["name"] for h in data["hosts"]][:3] == ["c1", "c2", "fw"]
    assert all(h["running"] and h["pid"] for h in data["hosts"])
    # Namespace hosts run the machine's own Debian; the platform is the machine's.
    assert {(h["kind"], h["release"]) for h in data["hosts"]} == {("namespace", None)}
    assert data["machine"]["release"] == debian.machine_release()
    assert data["machine"]["cgroups"] in ("v1", "v2", "hybrid")
    text = subprocess.run(QUIZSTACK + ["status", "--lab", lab.name], capture_output=True,
                          text=True, env=env, check=True).stdout
    assert f"platform: this machine {debian.release(debian.machine_release()).name}, cgroups " in text


def test_every_host_may_ping_with_an_icmp_socket_as_after_a_real_boot(lab):
    # systemd sets this at a real host's boot; Debian 13's ping (no raw-socket
    # capability) needs it for any user but root, Nagios's check_ping among them.
    assert lab.run("s1", ["sysctl", "-n", "net.ipv4.ping_group_range"]).stdout.split() == ["0", "2147483647"]
    done = lab.run("s1", ["runuser", "-u", "nobody", "--", "ping", "-c", "1", "-W", "2", "10.2.3.1"], check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# -- stop / start ---------------------------------------------------------------------


PROGRAM = """[program:ticker]
command=/bin/sh -c 'while true; do date >> /var/log/ticker.log; sleep 1; done'
autorestart=true
"""


def program_state(lab, host, name):
    out = lab.run(host, ["supervisorctl", "status", name], check=False).stdout
    return out.split()[1] if len(out.split()) > 1 else out


def test_stop_and_start_keep_files_and_services(lab):
    lab.run("nas2", ["sh", "-c", "mkdir -p /var/lib/qs-test && echo kept > /var/lib/qs-test/file"])
    lab.run("nas2", ["sh", "-c", "cat > /etc/supervisor/conf.d/ticker.conf"], input=PROGRAM)
    lab.run("nas2", ["supervisorctl", "update"])
    wait_for(lambda: program_state(lab, "nas2", "ticker") == "RUNNING", what="ticker running")
    lab.run("nas2", ["touch", "/run/stale"])

    lab.stop()
    assert not any(h["running"] for h in lab.status()["hosts"])
    lab.start()

    assert all(h["running"] for h in lab.status()["hosts"])
    assert lab.run("nas2", ["cat", "/var/lib/qs-test/file"]).stdout == "kept\n"
    wait_for(lambda: program_state(lab, "nas2", "ticker") == "RUNNING", what="ticker back")
    # /run starts empty at every boot, like a tmpfs /run on a real host.
    assert lab.run("nas2", ["test", "-e", "/run/stale"], check=False).returncode == 1
    # The network survived: the matrix still holds.
    assert pings(lab, "c1", "10.2.2.2") and pings(lab, "s1", "10.2.4.22")


def test_up_again_changes_nothing(lab):
    pids = {h["name"]: h["pid"] for h in lab.status()["hosts"]}
    messages = []
    lab.up(progress=messages.append)
    assert {h["name"]: h["pid"] for h in lab.status()["hosts"]} == pids
    assert messages == ["hosts: all 11 running"]


# -- the forward ---------------------------------------------------------------------


def test_forward_reaches_the_load_balancer_as_c1(lab):
    lab.run("lb", ["sh", "-c", "mkdir -p /srv-test && echo 'hello from lb' > /srv-test/index.html"])
    program = ("[program:web]\ncommand=/usr/bin/python3 -m http.server 80 --bind 10.2.2.2 "
               "--directory /srv-test\nredirect_stderr=true\nstdout_logfile=/var/log/web.log\n")
    lab.run("lb", ["sh", "-c", "cat > /etc/supervisor/conf.d/web.conf && supervisorctl update"], input=program)
    port = free_port()
    url = lab.open_forward(port=port)
    assert url == f"http://127.0.0.1:{port}/"

    def fetch():
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            return None

    assert wait_for(fetch, what="the page through the forward") == b"hello from lb\n"
    # It came in as c1: the server saw c1's address.
    assert "10.2.1.11" in lab.run("lb", ["cat", "/var/log/web.log"]).stdout
    assert lab.status()["forward"]["running"]
    lab.close_forward()
    assert fetch() is None
    assert lab.status()["forward"] is None


# -- whole labs: bad file, side by side, destroy, kill -9 ------------------------------


def test_bad_scenario_gives_one_line_and_creates_nothing(tmp_path, state_root):
    bad = tmp_path / "bad.toml"
    text = Path(load_scenario("pfinal").source).read_text()
    bad.write_text(text.replace('subnet = "10.2.3.0/24"', 'subnet = "10.2.3.0/99"'))
    name = lab_name("tbad")
    env = dict(os.environ, QUIZSTACK_STATE_ROOT=state_root)
    before = machine_view()
    proc = subprocess.run(QUIZSTACK + ["up", str(bad), "--lab", name], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"quizstack: {bad}: network LAN3: bad CIDR '10.2.3.0/99'")
    assert not (Path(state_root) / name).exists()
    assert of_lab(machine_view(), name, state_root)["netns"] == set()


def test_two_labs_side_by_side(lab):
    # The second lab keeps its state under /tmp, as pytest's tmp_path would.
    with tempfile.TemporaryDirectory(prefix="quizstack-test-") as root:
        other = Lab(lab_name("u"), topology=load_scenario("pfinal"), state_root=root)
        try:
            other.up()
            assert pings(other, "c1", "10.2.2.2") and pings(lab, "c1", "10.2.2.2")
            other.run("c1", ["sh", "-c", "echo other > /etc/which-lab"])
            assert lab.run("c1", ["test", "-e", "/etc/which-lab"], check=False).returncode == 1
            assert other.run("s1", ["stat", "-c", "%a", "/tmp"]).stdout.strip() == "1777"
            netns = machine_view()["netns"]
            assert f"qs-{other.name}-c1" in netns and f"qs-{lab.name}-c1" in netns
        finally:
            other.destroy()
    assert all(h["running"] for h in lab.status()["hosts"])


def test_destroy_leaves_nothing(state_root):
    before = machine_view()
    lab = Lab(lab_name("d"), topology=load_scenario("pfinal"), state_root=state_root)
    lab.up()
    lab.run("s1", ["sh", "-c", "cat > /etc/supervisor/conf.d/ticker.conf && supervisorctl update"],
            input=PROGRAM)
    # A process that entered only the network namespace (as `ip netns exec` does).
    stray = subprocess.Popen(["nsenter", f"--net={plan.netns_path(plan.host_netns(lab.name, 's2'))}",
                              "sleep", "300"], start_new_session=True)
    lab.open_forward(port=free_port())
    wait_for(lambda: procs.processes_in_netns({procs.netns_inode(plan.netns_path(plan.host_netns(lab.name, "s2")))}),
             what="the stray process")
    during = lab_processes(lab)
    assert len(during) >= 13      # 11 inits, the ticker's shell, the stray, the forward
    lab.destroy()
    stray.wait(timeout=10)        # ours to reap
    after = machine_view()
    assert not lab.exists and not lab.state_dir.exists()
    assert of_lab(after, lab.name, state_root) == of_lab(before, lab.name, state_root) \
        == {"netns": set(), "mounts": []}
    assert after["links"] == before["links"]
    assert after["addresses"] == before["addresses"]
    assert after["routes"] == before["routes"]
    assert [r for r in during if procs.alive(r)] == []


@pytest.mark.parametrize("moment", ["network", "hosts"])
def test_kill_9_during_up_then_up_then_destroy(state_root, moment):
    before = machine_view()
    name = lab_name("k" + moment[0])
    env = dict(os.environ, QUIZSTACK_STATE_ROOT=state_root)
    state_file = Path(state_root) / name / "state.json"
    up = subprocess.Popen(QUIZSTACK + ["up", "pfinal", "--lab", name], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def reached():
        try:
            st = json.loads(state_file.read_text())
        except (OSError, ValueError):
            return False
        kinds = {e["kind"] for e in st["created"]}
        return "netns" in kinds if moment == "network" else "init" in kinds

    try:
        wait_for(reached, timeout=30, what=f"up to reach the {moment}")
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait()
    lab = Lab(name, state_root=state_root)
    try:
        lab.up()
        assert all(h["running"] for h in lab.status()["hosts"])
        # Exactly one init per host: nothing was started twice.
        for host in ("c1", "s3", "bbdd"):
            ps = lab.run(host, ["ps", "-e", "-o", "comm="]).stdout.split()
            assert ps.count("supervisord") == 1
            inode = procs.netns_inode(plan.netns_path(plan.host_netns(name, host)))
            inits = [r for r in procs.processes_in_netns({inode}) if procs.is_namespace_init(r["pid"])]
            assert len(inits) == 1
        assert pings(lab, "c1", "10.2.2.2")
        during = lab_processes(lab)
    finally:
        lab.destroy()
    after = machine_view()
    assert of_lab(after, name, state_root) == of_lab(before, name, state_root) \
        == {"netns": set(), "mounts": []}
    assert after["links"] == before["links"]
    assert [r for r in during if procs.alive(r)] == []
    assert not (Path(state_root) / name).exists()
