"""The Compose export brought up here, on a dockerd of its own in a network namespace:
it serves QUIZ balanced with the image shared on GlusterFS containers, and `down`
leaves nothing behind.

Needs root and Debian's docker.io, docker-compose and mmdebstrap (setup.sh
installs them). The first run makes the base image from Debian's mirror and
the wheels from PyPI into ${XDG_CACHE_HOME:-~/.cache}/quizstack/compose; later
runs take them from there.
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from quizstack.deploy.plan import build_plan
from quizstack.export import compose
from quizstack.lab import cgroups
from quizstack.export.compose_run import OUTSIDE, OUTSIDE_MADE, TOOLS, Project, other_daemons
from quizstack.topology import load_scenario

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="a private dockerd needs root (namespaces, cgroups)"),
    pytest.mark.skipif(not all(os.path.exists(t) for t in TOOLS),
                       reason="docker.io, docker-compose or mmdebstrap missing (./setup.sh installs them)"),
]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _root_links():
    done = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return {line.split(": ")[1].split("@")[0] for line in done.stdout.splitlines()}


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""       # gone meanwhile


def _inspect(project, container, fmt):
    from quizstack.export.compose_run import DOCKER

    return project.run("docker inspect", [DOCKER, "inspect", "-f", fmt, container]).stdout.strip()


def _mounts():
    return Path("/proc/self/mountinfo").read_text()


def test_the_compose_export_serves_quiz_balanced_with_the_image_shared_and_leaves_nothing(capsys):
    state_root = tempfile.mkdtemp(prefix="qsc-")       # short: dockerd's sockets live under it
    out = tempfile.mkdtemp(prefix="qsc-export-")
    name = f"qsct{os.getpid() % 100000}"
    topo = load_scenario("pfinal")
    plan = build_plan(topo)
    links_before = _root_links()
    outside_before = {p: os.path.exists(p) for p in OUTSIDE}
    times = {}
    project = None
    try:
        try:
            started = time.monotonic()
            compose.write(out, topo, plan, compose.Options(name=name, port=8080))
            times["export"] = time.monotonic() - started
            project = Project(out, state_root=state_root)

            started = time.monotonic()
            up = project.up()
            times["up"] = time.monotonic() - started
            nas = [n for n, _ in plan.storage_hosts]
            assert sorted(up["containers"]) == sorted([*plan.web_hosts, plan.lb_hosts[0], plan.database_host, *nas])

            # Hermetic: the daemon's bridges and veths are in its namespace, none in the machine's,
            # and the only listener there is the published port on loopback.
            inside = subprocess.run(["nsenter", f"--net={project.netns_path}", "ip", "-o", "link", "show"],
                                    capture_output=True, text=True, check=True).stdout
            bridges = set(re.findall(r"^\d+: (br-[0-9a-f]+)", inside, re.M))
            assert len(bridges) == 3 and not bridges & _root_links()
            listening = subprocess.run(["nsenter", f"--net={project.netns_path}", "ss", "-Hltn"],
                                       capture_output=True, text=True, check=True).stdout.split("\n")
            assert [line.split()[3] for line in listening if line.strip()] == ["127.0.0.1:8080"]
            assert subprocess.run(["nsenter", f"--net={project.netns_path}", "ip", "route", "show",
                                   "default"], capture_output=True, text=True).stdout.strip() == ""

            # The loopback forward: the machine's 127.0.0.1:free port → the published one, inside.
            url = project.forward(_free_port())
            with urllib.request.urlopen(url + "healthz", timeout=10) as answer:
                assert answer.status == 200 and answer.headers["X-Server"] in plan.web_hosts

            started = time.monotonic()
            rows = project.check()
            times["check"] = time.monotonic() - started
            failed = [f"{r.group}: {r.name}: {r.detail}" for r in rows if not r.ok]
            assert not failed, failed
            shown = {r.group + ": " + r.name: r.detail for r in rows}
            assert shown["balancing: 30 requests from c1 spread round-robin"].startswith("s1/s2/s3: 10/10/10")
            assert shown["storage: the image is on every brick of volume nas"] == "present on: nas1, nas2, nas3"
            assert len(rows) == 6

            # The restart policy: s2's server dies (its main process killed), Docker starts it
            # again, it turns healthy, and the balancer sends it requests once more.
            started = time.monotonic()
            container = project.containers()["s2"][0]
            pid = int(_inspect(project, container, "{{.State.Pid}}"))
            os.kill(pid, 9)
            deadline = time.monotonic() + 90
            while True:
                restarts, health = _inspect(project, container, "{{.RestartCount}} {{.State.Health.Status}}").split()
                if int(restarts) >= 1 and health == "healthy":
                    break
                assert time.monotonic() < deadline, f"s2 not back healthy: {restarts} restarts, {health}"
                time.sleep(0.5)
            project.wait_backends_up()
            times["s2 back"] = time.monotonic() - started
            from quizstack.export.compose_check import run_checks
            # Every server answers again, all 200. Not exactly 10 each: HAProxy puts a server
            # that comes back in the next round, so the first 30 requests may be 11/9/10.
            again = run_checks(project)[1].detail
            counts = re.match(r"s1/s2/s3: (\d+)/(\d+)/(\d+); statuses \{'200': 30\}", again)
            assert counts and all(int(c) > 0 for c in counts.groups()), again
        finally:
            if project is not None:
                started = time.monotonic()
                removed = project.down()
                times["down"] = time.monotonic() - started
            shutil.rmtree(out, ignore_errors=True)
        # Nothing left: no process, mount, cgroup, namespace, veth, file outside.
        mark = str(Path(state_root) / "compose" / name)
        assert not [pid for pid in os.listdir("/proc") if pid.isdigit()
                    and (mark in _cmdline(pid) or project.netns_path + " " in _cmdline(pid))]
        assert mark not in _mounts() and project.netns_path not in _mounts()
        assert not os.path.exists(project.netns_path)
        assert not cgroups.detect().named(project.cgroup), removed
        new_links = _root_links() - links_before
        assert not [link for link in new_links if re.fullmatch(r"veth[0-9a-f]{7}|br-[0-9a-f]{12}|docker0", link)]
        if not other_daemons():
            # What dockerd and containerd write outside their folders (shared by every
            # project's daemon: removed with the last one) is gone, if it was not there before.
            assert {p for p in OUTSIDE if os.path.exists(p)} <= {p for p, e in outside_before.items() if e}
            assert not os.path.exists(OUTSIDE_MADE)
        assert os.listdir(state_root) == []
    finally:
        shutil.rmtree(state_root, ignore_errors=True)
    with capsys.disabled():
        print("\ncompose export of pfinal: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
