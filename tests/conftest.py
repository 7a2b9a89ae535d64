"""Fixtures shared by the test layers that need a whole deployed service.

`deployed` brings the default scenario up once per test session (lab, every
role, the loopback forward, the checks) under a unique lab name and a
temporary state root, and destroys it at the end, whatever happened.
"""

import os
import shutil
import socket
import tempfile
import time

import pytest


SERVICE_STATE_PARENT = "/srv/quizstack-tests"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def lab_state_root():
    """One state root for every lab of the session (each has its own name),
    set in QUIZSTACK_STATE_ROOT for the tests' command-line calls and put
    back at the end. One root for all: a second root set by a second lab's
    fixture would send the first lab's commands to the wrong place."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, mounts)")
    previous = os.environ.get("QUIZSTACK_STATE_ROOT")
    # Not under /tmp: hosts then see the machine's /tmp (copy-on-write), and with
    # it this checkout and its .venv if the checkout lives there; the app servers
    # run from that .venv.
    os.makedirs(SERVICE_STATE_PARENT, exist_ok=True)
    root = tempfile.mkdtemp(prefix="state-", dir=SERVICE_STATE_PARENT)
    os.environ["QUIZSTACK_STATE_ROOT"] = root
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        try:
            os.rmdir(SERVICE_STATE_PARENT)
        except OSError:
            pass  # another session's labs live there too
        if previous is None:
            os.environ.pop("QUIZSTACK_STATE_ROOT", None)
        else:
            os.environ["QUIZSTACK_STATE_ROOT"] = previous


@pytest.fixture(scope="session")
def deployed(lab_state_root):
    from quizstack import stack
    from quizstack.lab import Lab
    from quizstack.topology import load_scenario

    lab = Lab(f"sv{os.getpid() % 100000}", topology=load_scenario("pfinal"))
    try:
        started = time.monotonic()
        result = stack.up(lab, port=free_port())
        yield lab, result, time.monotonic() - started
    finally:
        lab.destroy()
