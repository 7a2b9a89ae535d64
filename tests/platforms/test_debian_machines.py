"""quizstack itself on a fresh Debian 12 and a fresh Debian 13 machine, as the README runs it.

Each release's machine is a systemd-nspawn container of a cached root (see
machine.py for what it holds and why each flag): the checkout as it is in the
working tree, `./setup.sh`, `quizstack up pfinal`, `check`, the service from
the machine's side through the lab's firewall, faults under cgroup v2 (freeze
and kill), and `destroy` leaving nothing behind. The first run builds
and prepares the root (several minutes a release); later runs take the
README's commands only.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import time

import pytest

import machine

def in_a_container() -> bool:
    """True inside a container (the machines below would be containers in a container)."""
    return os.environ.get("container") is not None or os.path.exists("/run/host/container-manager")


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)"),
    pytest.mark.skipif(in_a_container(), reason="already inside a container (bench/on_debian, say): "
                                                "the fresh Debian machines run on the machine itself"),
    pytest.mark.skipif(not (shutil.which("systemd-nspawn") and shutil.which("mmdebstrap")),
                       reason="needs systemd-nspawn and mmdebstrap (setup.sh installs them)"),
]

QUIZSTACK = ".venv/bin/quizstack"
SETUP_TIMEOUT = 900
UP_TIMEOUT = 900
CHECK_TIMEOUT = 300
FAULT_TIMEOUT = 180
DESTROY_TIMEOUT = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl_status(url: str) -> str:
    done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", url],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or done.stderr.strip()


class Clock:
    """How long each step took, printed at the end (and in a failure's report)."""

    def __init__(self, release):
        self.release, self.took = release, {}

    def time(self, name, work, *args, **kwargs):
        started = time.monotonic()
        try:
            return work(*args, **kwargs)
        finally:
            self.took[name] = self.took.get(name, 0) + time.monotonic() - started

    def report(self):
        return (f"Debian {self.release} timings: "
                + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.took.items()))


@pytest.mark.parametrize("release", machine.RELEASES)
def test_quizstack_up_and_check_on_a_fresh_debian_machine(release):
    clock = Clock(release)
    started = time.monotonic()
    failed = None
    try:
        with machine.machine(release) as (root, prepare_seconds):
            clock.took["prepare"] = prepare_seconds
            with machine.boot(root, release) as box:
                _on(box, release, clock)
            assert box.returncode == 0 and not box.killed, \
                f"the container did not exit by itself after destroy (exit {box.returncode})"
    except machine.StepFailed as exc:
        failed = str(exc)       # which step, how, its last lines: no traceback needed
    finally:
        clock.took["total"] = time.monotonic() - started
        print(clock.report())
    if failed:
        pytest.fail(f"{failed}\n{clock.report()}", pytrace=False)


def _on(box, release, clock):
    run = box.run
    facts = run("machine facts", "grep ^VERSION_CODENAME= /etc/os-release; "
                "test -e /sys/fs/cgroup/cgroup.controllers && echo cgroup2-only; "
                "test -e /sys/fs/cgroup/freezer || echo no-v1", timeout=30)
    assert f"VERSION_CODENAME={release}" in facts, facts
    assert "cgroup2-only" in facts and "no-v1" in facts, f"not the cgroup v2 layout:\n{facts}"

    clock.time("setup.sh", run, "setup.sh", ["./setup.sh"], cwd=machine.CHECKOUT, timeout=SETUP_TIMEOUT)
    port = free_port()
    try:
        clock.time("up", run, "quizstack up", [QUIZSTACK, "up", "pfinal", "--port", str(port)],
                   cwd=machine.CHECKOUT, timeout=UP_TIMEOUT)
        table = clock.time("check", run, "quizstack check", [QUIZSTACK, "check"],
                           cwd=machine.CHECKOUT, timeout=CHECK_TIMEOUT, quiet=True)
        print(table)
        # From the machine's side: the container shares its network, the lab's
        # forward listens on the machine's loopback, the firewall lets it in.
        answer = curl_status(f"http://127.0.0.1:{port}/")
        assert answer == "200", f"http://127.0.0.1:{port}/ from the machine: {answer}"

        def chaos(*args):
            return run(f"quizstack chaos {' '.join(args)}", [QUIZSTACK, "chaos", *args],
                       cwd=machine.CHECKOUT, timeout=FAULT_TIMEOUT)
        clock.time("faults", chaos, "freeze", "s1")
        faults = chaos("faults")
        assert "s1: freeze" in faults, faults
        clock.time("faults", chaos, "heal")
        clock.time("faults", chaos, "kill", "s2")
        # heal returns once the service is whole again: s2 back in HAProxy
        # included, so check's round-robin count right after must see it.
        healed = clock.time("faults", chaos, "heal")
        assert "service whole again" in healed, healed
        assert "no active fault" in chaos("faults")
        again = clock.time("check", run, "quizstack check (after the faults)", [QUIZSTACK, "check"],
                           cwd=machine.CHECKOUT, timeout=CHECK_TIMEOUT, quiet=True)
        print(again)
    except BaseException:
        if box.proc.poll() is None:      # what the lab looked like, for the report
            with contextlib.suppress(machine.StepFailed):
                run("quizstack status (on failure)", [QUIZSTACK, "status"], cwd=machine.CHECKOUT,
                    timeout=CHECK_TIMEOUT)
        raise
    finally:
        if box.proc.poll() is None:
            clock.time("destroy", run, "quizstack destroy", [QUIZSTACK, "destroy"],
                       cwd=machine.CHECKOUT, timeout=DESTROY_TIMEOUT)
    left = run("lab leftovers", "ip netns list; grep -E ' (/srv/quizstack|/run/netns/)' /proc/self/mountinfo; "
               "ls -d /sys/fs/cgroup/quizstack* 2>/dev/null; ls /srv/quizstack 2>/dev/null; true",
               timeout=30)
    assert left.strip() == "", f"destroy left these behind:\n{left}"
