"""Fixtures shared by the test layers that need a whole deployed service.

`deployed` brings the default scenario up once per test session (lab, every
role, the loopback forward, the checks) under a unique lab name and a
temporary state root, and destroys it at the end, whatever happened.
"""

import os
import socket
import time

import pytest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def deployed(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, mounts)")
    from quizstack import stack
    from quizstack.lab import Lab
    from quizstack.topology import load_scenario

    previous = os.environ.get("QUIZSTACK_STATE_ROOT")
    os.environ["QUIZSTACK_STATE_ROOT"] = str(tmp_path_factory.mktemp("service-state"))
    lab = Lab(f"sv{os.getpid() % 100000}", topology=load_scenario("pfinal"))
    try:
        started = time.monotonic()
        result = stack.up(lab, port=free_port())
        yield lab, result, time.monotonic() - started
    finally:
        lab.destroy()
        if previous is None:
            os.environ.pop("QUIZSTACK_STATE_ROOT", None)
        else:
            os.environ["QUIZSTACK_STATE_ROOT"] = previous
