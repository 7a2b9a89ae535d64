"""Full-system hosts, as root: whole Debian systems with systemd on the lab's networks.

One pfinal lab where the firewall, the load balancer, a storage node and the
database are full systems (systemd-nspawn over the cached base) and the rest
namespace hosts, deployed as `up` does: the roles install those systems'
packages with apt through the lab's door and run their services under
systemd. They boot, reach each other and nothing outside but Debian's mirror,
pass every check, survive a reboot of them all at once with the data kept and
the service back by itself, and destroy leaves nothing behind.
"""

import os
import socket
import time

import pytest

from quizstack import stack
from quizstack.lab import Lab, system
from quizstack.topology import load_scenario
from quizstack.topology.loader import scenario_path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")

SYSTEMS = ("fw", "lb", "nas3", "bbdd")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    text = scenario_path("pfinal").read_text()
    for host in SYSTEMS:
        text = text.replace(f"[hosts.{host}]\n", f'[hosts.{host}]\nkind = "system"\n')
    path = tmp_path_factory.mktemp("scenario") / "pfinal-systems.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def lab(lab_state_root, scenario):
    lab = Lab(f"fs{os.getpid() % 100000}", topology=load_scenario(scenario))
    try:
        lab.result = stack.up(lab, port=free_port())
        yield lab
    finally:
        lab.destroy()


def failed(checks):
    return [f"{r.group}: {r.name}: {r.detail}" for r in checks if not r.ok]


def sh(lab, host, script, **kw):
    return lab.run(host, ["sh", "-c", script], **kw)


def test_a_full_system_runs_its_own_debian_under_systemd(lab):
    out = sh(lab, "bbdd", "systemctl is-system-running; hostname; ps -o comm= -p 1; "
                          "test -f /etc/quizstack-base && echo own-root").stdout.split()
    assert out[0] in ("running", "degraded") and out[1:] == ["bbdd", "systemd", "own-root"]
    # The database role's packages were installed there, and its cluster runs under systemd.
    out = sh(lab, "bbdd", "dpkg-query -W -f='${Status}' postgresql; echo; "
                          "systemctl is-active postgresql@15-quiz; pg_lsclusters -h | cut -d' ' -f2")
    assert out.stdout.split() == ["install", "ok", "installed", "active", "quiz"]
    # A namespace host next to it still shares the machine's files.
    assert sh(lab, "s2", "test -f /etc/quizstack-base || echo machine").stdout.strip() == "machine"


def test_full_systems_sit_on_the_labs_networks_and_have_no_way_out(lab):
    assert sh(lab, "nas3", "ping -c1 -W2 10.2.4.31 >/dev/null && ping -c1 -W2 10.2.4.11 >/dev/null "
                           "&& echo ok").stdout.strip() == "ok"
    assert "default" not in sh(lab, "bbdd", "ip route").stdout
    out = sh(lab, "nas3", "curl -s -m 3 -o /dev/null http://1.1.1.1/; echo $?", check=False)
    assert out.stdout.strip() != "0"


def test_every_check_passes_and_a_second_deployment_changes_nothing(lab):
    assert lab.result.checks and not failed(lab.result.checks)
    again = stack.up(lab, port=free_port(), run_checks=False, full=True)
    assert again.deployed.changed == []


def test_the_door_lets_apt_reach_the_mirror_and_nothing_else(lab):
    mirror = sh(lab, "bbdd", "curl -s -m 20 -o /dev/null -w '%{http_code}' -I "
                           "-x http://127.0.0.1:3142 "
                           "http://deb.debian.org/debian/dists/bookworm/Release").stdout
    assert mirror == "200"
    other = sh(lab, "bbdd", "curl -s -m 10 -o /dev/null -w '%{http_code}' "
                          "-x http://127.0.0.1:3142 http://example.com/").stdout
    assert other == "403"


def booted_again(lab, host, before):
    rec = lab._running(host)
    init = system.system_init(rec["pid"]) if rec else None
    if init in (None, before):
        return False
    state = sh(lab, host, "systemctl is-system-running", check=False).stdout.strip()
    return state in ("running", "degraded")


def test_every_system_rebooted_at_once_comes_back_serving_with_the_data_kept(lab):
    count = "runuser -u postgres -- psql -XAtd quiz -c 'select count(*) from quiz_quiz'"
    quizzes = sh(lab, "bbdd", count).stdout.strip()
    sh(lab, "nas3", "echo kept > /root/note")
    before = {h: lab.init_pid(h) for h in SYSTEMS}
    for host in SYSTEMS:
        sh(lab, host, "systemctl reboot", check=False)
    deadline = time.monotonic() + 90
    waiting = set(SYSTEMS)
    while waiting and time.monotonic() < deadline:
        waiting = {h for h in waiting if not booted_again(lab, h, before[h])}
        time.sleep(0.2)
    assert not waiting, f"not back from the reboot: {sorted(waiting)}"
    # Then the services, by themselves: no step by hand.
    left = ["not checked"]
    while left and time.monotonic() < deadline:
        left = failed(stack.check_lab(lab, ports=None))
        if left:
            time.sleep(2)
    assert not left, left
    assert int(sh(lab, "bbdd", count).stdout.strip()) >= int(quizzes)
    assert sh(lab, "nas3", "cat /root/note").stdout.strip() == "kept"


def test_stop_powers_systems_off_and_start_boots_them_with_their_files(lab):
    sh(lab, "nas3", "echo kept > /root/stopnote")
    lab.stop()
    assert lab._running("s1") is None
    assert not any(line.split()[1].startswith(str(lab.state_dir))
                   for line in open("/proc/self/mounts")), "an overlay stayed mounted"
    lab.start()
    assert sh(lab, "nas3", "cat /root/stopnote").stdout.strip() == "kept"


def test_destroy_leaves_no_process_mount_cgroup_or_namespace(lab_state_root, scenario):
    lab = Lab(f"fd{os.getpid() % 100000}", topology=load_scenario(scenario))
    try:
        lab.up()
        keepers = [lab._running(h) for h in SYSTEMS]
        inits = [system.system_init(k["pid"]) for k in keepers]
        assert all(inits)
    finally:
        lab.destroy()
    for pid in [k["pid"] for k in keepers] + inits:
        assert not os.path.exists(f"/proc/{pid}/stat") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not any(str(lab.state_dir) in line for line in open("/proc/self/mounts"))
    for relative in (system.cgroup_dir(lab.name, h) for h in SYSTEMS):
        assert not system.cgroup_paths(relative) or not any(
            os.path.exists(p) for p in system.cgroup_paths(relative))
    assert not any(os.path.exists(f"/run/systemd/nspawn/propagate/{system.machine_name(lab.name, h)}")
                   for h in SYSTEMS)
    assert not any(name.startswith(f"qs-{lab.name}") for name in os.listdir("/run/netns"))
