"""Full-system hosts, as root: whole Debian systems with systemd on the lab's networks.

One pfinal lab where s1 and bbdd are full systems (systemd-nspawn over the
cached base) and the rest namespace hosts: they boot, reach each other, reach
nothing outside but Debian's mirror through the lab's door, survive a reboot
and stop/start with their files, and destroy leaves nothing behind.
"""

import os
import time

import pytest

from quizstack.lab import Lab, system
from quizstack.topology import load_scenario
from quizstack.topology.loader import scenario_path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")

SYSTEMS = ("s1", "bbdd")


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
        lab.up()
        yield lab
    finally:
        lab.destroy()


def sh(lab, host, script, **kw):
    return lab.run(host, ["sh", "-c", script], **kw)


def test_a_full_system_runs_its_own_debian_under_systemd(lab):
    out = sh(lab, "s1", "systemctl is-system-running; hostname; ps -o comm= -p 1; "
                        "test -f /etc/quizstack-base && echo own-root").stdout.split()
    assert out[0] in ("running", "degraded") and out[1:] == ["s1", "systemd", "own-root"]
    # A namespace host next to it still shares the machine's files.
    assert sh(lab, "s2", "test -f /etc/quizstack-base || echo machine").stdout.strip() == "machine"


def test_full_systems_sit_on_the_labs_networks_and_have_no_way_out(lab):
    assert sh(lab, "s1", "ping -c1 -W2 10.2.4.31 >/dev/null && ping -c1 -W2 10.2.3.1 >/dev/null "
                         "&& echo ok").stdout.strip() == "ok"
    assert "default" not in sh(lab, "bbdd", "ip route").stdout
    out = sh(lab, "s1", "curl -s -m 3 -o /dev/null http://1.1.1.1/; echo $?", check=False)
    assert out.stdout.strip() != "0"


def test_the_door_lets_apt_reach_the_mirror_and_nothing_else(lab):
    mirror = sh(lab, "s1", "curl -s -m 20 -o /dev/null -w '%{http_code}' -I "
                           "-x http://127.0.0.1:3142 "
                           "http://deb.debian.org/debian/dists/bookworm/Release").stdout
    assert mirror == "200"
    other = sh(lab, "s1", "curl -s -m 10 -o /dev/null -w '%{http_code}' "
                          "-x http://127.0.0.1:3142 http://example.com/").stdout
    assert other == "403"


def test_a_reboot_is_a_real_one_and_the_host_comes_back_with_its_files(lab):
    sh(lab, "bbdd", "echo kept > /root/note")
    before = lab.init_pid("bbdd")
    sh(lab, "bbdd", "systemctl reboot", check=False)
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        init = system.system_init(lab._running("bbdd")["pid"]) if lab._running("bbdd") else None
        if init not in (None, before):
            state = sh(lab, "bbdd", "systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
        time.sleep(0.2)
    assert state in ("running", "degraded"), "bbdd did not come back from its reboot"
    assert sh(lab, "bbdd", "cat /root/note").stdout.strip() == "kept"
    assert sh(lab, "s1", "ping -c1 -W2 10.2.4.31 >/dev/null && echo ok").stdout.strip() == "ok"


def test_stop_powers_systems_off_and_start_boots_them_with_their_files(lab):
    sh(lab, "s1", "echo kept > /root/stopnote")
    lab.stop()
    assert lab._running("s1") is None
    assert not any(line.split()[1].startswith(str(lab.state_dir))
                   for line in open("/proc/self/mounts")), "an overlay stayed mounted"
    lab.start()
    assert sh(lab, "s1", "cat /root/stopnote").stdout.strip() == "kept"


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
