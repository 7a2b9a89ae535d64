"""One complete lab for every lab test that needs it, brought up once per run.

Bringing the complete scenario up takes most of a minute, so the modules
that need it (access, chaos, monitoring) share this one; each leaves it
healthy (faults healed, services running) for the next.
"""

import os
import shutil
import socket
import tempfile

import pytest

from quizstack import stack
from quizstack.topology import load_scenario


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def complete():
    """(lab, the UpResult of its first `up`, checks included)."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, mounts)")
    from quizstack.lab import Lab

    os.makedirs("/srv/quizstack-tests", exist_ok=True)
    root = tempfile.mkdtemp(prefix="complete-", dir="/srv/quizstack-tests")
    previous = os.environ.get("QUIZSTACK_STATE_ROOT")
    os.environ["QUIZSTACK_STATE_ROOT"] = root
    lab = Lab(f"cx{os.getpid() % 100000}", topology=load_scenario("complete"))
    try:
        result = stack.up(lab, port=free_port())
        yield lab, result
    finally:
        lab.destroy()
        shutil.rmtree(root, ignore_errors=True)
        if previous is None:
            os.environ.pop("QUIZSTACK_STATE_ROOT", None)
        else:
            os.environ["QUIZSTACK_STATE_ROOT"] = previous
