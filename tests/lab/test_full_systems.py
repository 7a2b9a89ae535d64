"""Full-system hosts, as root: the seed's figure on whole Debian systems, deployed over SSH.

The bundled scenario `systems`: every host but the clients boots its own
Debian with systemd as init (systemd-nspawn over the cached base). `quizstack
deploy` reaches them over SSH as it would real machines (each connection
carried into the host's namespace by an ssh_config ProxyCommand): the roles
install their packages with apt through the lab's door, ship QUIZ as a
release of wheels, and run every service under systemd. Then: every check
passes, a second deployment changes nothing, a new release rolls out server
by server under load without a failed request, every system rebooted at once
comes back serving with its data, and destroy leaves nothing behind.
"""

import os
import shutil
import socket
import time
import zipfile
from pathlib import Path

import pytest

from quizstack import cli, stack, upgrade
from quizstack.chaos import runner
from quizstack.deploy import ship
from quizstack.deploy.plan import build_plan
from quizstack.errors import LabError
from quizstack.lab import Lab, system
from quizstack.topology import load_scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")

SYSTEMS = ("fw", "lb", "s1", "s2", "s3", "nas1", "nas2", "nas3", "bbdd")
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SHORT_LOAD = runner.Settings(warmup=2.0, after=2.0, rate=10.0, workers=4, writes=0.2)


def failed(checks):
    return [f"{r.group}: {r.name}: {r.detail}" for r in checks if not r.ok]


def sh(lab, host, script, **kw):
    return lab.run(host, ["sh", "-c", script], **kw)


@pytest.fixture(scope="module")
def deployed(lab_state_root, tmp_path_factory, deploy_over_ssh):
    """(lab, ssh deploy argv, seconds of the first deployment)."""
    lab = Lab(f"fs{os.getpid() % 100000}", topology=load_scenario("systems"))
    try:
        argv, seconds = deploy_over_ssh(lab, tmp_path_factory.mktemp("ssh"))
        lab.open_forward(port=free_port())
        yield lab, argv, seconds
    finally:
        lab.destroy()


def test_a_full_system_runs_its_own_debian_with_its_packages_from_apt(deployed):
    lab, _, _ = deployed
    out = sh(lab, "bbdd", "systemctl is-system-running; hostname; ps -o comm= -p 1; "
                          "test -f /etc/quizstack-base && echo own-root").stdout.split()
    assert out[0] in ("running", "degraded") and out[1:] == ["bbdd", "systemd", "own-root"]
    out = sh(lab, "bbdd", "dpkg-query -W -f='${Status}' postgresql; echo; "
                          "systemctl is-active postgresql@15-quiz; pg_lsclusters -h | cut -d' ' -f2")
    assert out.stdout.split() == ["install", "ok", "installed", "active", "quiz"]
    # QUIZ runs from a release of its own, as www-data, under a hardened unit.
    out = sh(lab, "s2", "readlink /opt/quiz/current; systemctl show -p ProtectSystem -p User quiz; "
                        "ps -o user= -C gunicorn | sort -u")
    assert out.stdout.startswith("/opt/quiz/releases/") and "ProtectSystem=full" in out.stdout
    assert out.stdout.split()[-1] == "www-data"
    # A namespace host beside them still shares the machine's files.
    assert sh(lab, "c1", "test -f /etc/quizstack-base || echo machine").stdout.strip() == "machine"


def test_full_systems_have_no_way_out_but_the_door_to_the_mirror(deployed):
    lab, _, _ = deployed
    assert "default" not in sh(lab, "bbdd", "ip route").stdout
    out = sh(lab, "nas3", "curl -s -m 3 -o /dev/null http://1.1.1.1/; echo $?", check=False)
    assert out.stdout.strip() != "0"
    proxy = "curl -s -m 20 -o /dev/null -w '%{http_code}' -x http://127.0.0.1:3142 "
    assert sh(lab, "nas3", proxy + "-I http://deb.debian.org/debian/dists/bookworm/Release").stdout == "200"
    assert sh(lab, "nas3", proxy + "http://example.com/").stdout == "403"


def test_deployed_over_ssh_every_check_passes_and_a_second_run_changes_nothing(deployed, capsys):
    lab, argv, seconds = deployed
    assert not failed(stack.check_lab(lab, ports=None))
    # sshd on the systems saw the deployment's logins.
    assert "Accepted publickey for root" in sh(lab, "s1", "journalctl -u ssh --no-pager").stdout
    capsys.readouterr()
    started = time.monotonic()
    assert cli.main(argv) == 0
    again = time.monotonic() - started
    assert "deploy: no change" in capsys.readouterr().out
    print(f"first deployment over SSH {seconds:.0f} s, second {again:.1f} s")


def next_release(tmp_path):
    """This checkout's release with one more file in QUIZ: another version, for real."""
    current = ship.prepare()
    project = Path(current.wheels[-1])
    changed = tmp_path / project.name
    shutil.copy2(project, changed)
    with zipfile.ZipFile(changed, "a") as wheel:
        wheel.writestr("quiz/release_note.txt", f"the next release, made at {time.time()}\n")
    # pip checks nothing against RECORD for a file it lists; this one it installs as well.
    return ship.assemble(changed, [Path(w) for w in current.wheels[:-1]], current.requirements)


def test_a_new_release_rolls_out_server_by_server_under_load_without_a_failed_request(deployed, tmp_path):
    lab, _, _ = deployed
    release = next_release(tmp_path)
    result = upgrade.under_load(lab, release, SHORT_LOAD)
    summary = result["summary"]
    assert result["changed"] > 0 and summary["requests"] > 50
    assert summary["failed"] == 0, summary
    assert result["lost"] == []
    plan = build_plan(lab.topology)
    for server in plan.web_hosts:
        out = sh(lab, server, "readlink /opt/quiz/current; ls /opt/quiz/current/lib/python3*/"
                              "site-packages/quiz/release_note.txt")
        assert out.stdout.split()[0] == f"{release.path}/venv"
    # The same release again changes nothing.
    assert stack.deploy_lab(lab, release=release).changed == []


def serving_again(lab, deadline):
    """Poll the checks until they all pass or the deadline; what failed, with each
    system's failed units and each server's health, when they never did."""
    left = ["not checked yet"]
    while time.monotonic() < deadline:
        try:
            left = failed(stack.check_lab(lab, ports=None))
        except Exception as exc:     # a check that cannot even run (HTTP 503 on a form)
            left = [str(exc)]
        if not left:
            return []
        time.sleep(2)
    for host in SYSTEMS:
        units = sh(lab, host, "systemctl --failed --no-legend --plain | cut -d' ' -f1", check=False)
        left.append(f"{host} failed units: {units.stdout.split()}")
    for server in build_plan(lab.topology).backends:
        health = sh(lab, "lb", f"curl -s -m 3 http://{server.address}:8000/healthz", check=False)
        left.append(f"{server.name} /healthz: {health.stdout.strip()!r}")
    return left


def booted_again(lab, host, before):
    rec = lab._running(host)
    init = system.system_init(rec["pid"]) if rec else None
    if init in (None, before):
        return False
    state = sh(lab, host, "systemctl is-system-running", check=False).stdout.strip()
    return state in ("running", "degraded")


def test_chaos_stops_a_systemd_unit_and_heal_starts_it_again(deployed):
    lab, _, _ = deployed
    with pytest.raises(LabError, match="no systemd unit 'nosuch'"):
        lab.inject("stop", "s1", service="nosuch")
    lab.inject("stop", "s1", service="quiz")
    assert sh(lab, "s1", "systemctl is-active quiz", check=False).stdout.strip() == "inactive"
    assert [(f["kind"], f["host"], f["service"]) for f in lab.faults()] == [("stop", "s1", "quiz")]
    with pytest.raises(LabError, match="is inactive, not running: nothing to stop"):
        lab.inject("stop", "s2", service="systemd-tmpfiles-clean.service")  # a one-shot, done
    lab.heal()
    assert lab.faults() == []
    assert sh(lab, "s1", "systemctl is-active quiz", check=False).stdout.strip() in ("active", "activating")
    left = serving_again(lab, time.monotonic() + 60)
    assert not left, left


def test_every_system_rebooted_at_once_comes_back_serving_with_the_data_kept(deployed):
    lab, _, _ = deployed
    count = "runuser -u postgres -- psql -XAtd quiz -c 'select count(*) from quiz_quiz'"
    quizzes = int(sh(lab, "bbdd", count).stdout.strip())
    media = f"ls {build_plan(lab.topology).brick}/media | wc -l"
    images = int(sh(lab, "nas2", media).stdout.strip())
    before = {h: lab.init_pid(h) for h in SYSTEMS}
    for host in SYSTEMS:
        sh(lab, host, "systemctl reboot", check=False)
    deadline = time.monotonic() + 150
    waiting = set(SYSTEMS)
    while waiting and time.monotonic() < deadline:
        waiting = {h for h in waiting if not booted_again(lab, h, before[h])}
        time.sleep(0.2)
    assert not waiting, f"not back from the reboot: {sorted(waiting)}"
    # Then the services, by themselves: no step by hand.
    left = serving_again(lab, deadline)
    assert not left, left
    # Everything from before is still there (the checks clean up after themselves).
    assert int(sh(lab, "bbdd", count).stdout.strip()) >= quizzes > 0
    assert int(sh(lab, "nas2", media).stdout.strip()) >= images > 0


def test_stop_powers_systems_off_and_start_boots_them_serving(deployed):
    lab, _, _ = deployed
    lab.stop()
    assert all(lab._running(h) is None for h in SYSTEMS)
    assert not any(line.split()[1].startswith(str(lab.state_dir))
                   for line in open("/proc/self/mounts")), "an overlay stayed mounted"
    lab.start()
    left = serving_again(lab, time.monotonic() + 90)
    assert not left, left


def test_destroy_leaves_no_process_mount_cgroup_or_namespace(lab_state_root):
    lab = Lab(f"fd{os.getpid() % 100000}", topology=load_scenario("systems"))
    try:
        lab.up()
        keepers = [lab._running(h) for h in SYSTEMS]
        inits = [system.system_init(k["pid"]) for k in keepers]
        door = lab._load()["door"]
        assert all(inits)
    finally:
        lab.destroy()
    for pid in [k["pid"] for k in keepers] + inits + [door["pid"]]:
        assert not os.path.exists(f"/proc/{pid}/stat") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not any(str(lab.state_dir) in line for line in open("/proc/self/mounts"))
    for host in SYSTEMS:
        assert not any(os.path.exists(p) for p in system.cgroup_paths(system.cgroup_dir(lab.name, host)))
        assert not os.path.exists(f"/run/systemd/nspawn/propagate/{system.machine_name(lab.name, host)}")
    assert not any(name.startswith(f"qs-{lab.name}") for name in os.listdir("/run/netns"))

