"""`quizstack up` killed half-way through the deployment, then run again, as root.

The second `up` must finish the job — every role is idempotent and reads what
is there — and the service must then work; `destroy` must still clean up.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from quizstack import stack
from quizstack.check import Checker
from quizstack.deploy.plan import build_plan

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_killed_during_the_deployment_is_finished_by_the_next_up():
    from quizstack.lab import Lab

    os.makedirs("/srv/quizstack-tests", exist_ok=True)
    root = tempfile.mkdtemp(prefix="crash-", dir="/srv/quizstack-tests")
    name = f"kd{os.getpid() % 100000}"
    env = dict(os.environ, QUIZSTACK_STATE_ROOT=root)
    up = subprocess.Popen([sys.executable, "-m", "quizstack.cli", "up", "pfinal", "--lab", name,
                           "--no-check", "--port", str(free_port())], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    lab = Lab(name, state_root=root)
    try:
        seen = []
        deadline = time.monotonic() + 120
        for line in up.stdout:
            seen.append(line)
            # Mid-way: the database and the storage daemons are done, the volume is not.
            if "storage: volume on" in line or time.monotonic() > deadline:
                break
        up.send_signal(signal.SIGKILL)
        up.wait(timeout=30)
        assert any("storage: volume on" in line for line in seen), "".join(seen)

        result = stack.up(lab, port=free_port(), run_checks=False)
        assert result.deployed.changed  # it had work left to do
        checks = Checker(lab, build_plan(lab.topology)).service()
        assert checks and all(r.ok for r in checks), [r for r in checks if not r.ok]
    finally:
        if up.poll() is None:
            up.kill()
        lab.destroy()
        shutil.rmtree(root, ignore_errors=True)
