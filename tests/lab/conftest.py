"""One complete lab for every lab test that needs it, brought up once per run.

Bringing the complete scenario up takes most of a minute, so the modules
that need it (access, chaos, monitoring) share this one; each leaves it
healthy (faults healed, services running) for the next.
"""

import os
import socket

import pytest

from quizstack import stack
from quizstack.topology import load_scenario


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def complete(lab_state_root):
    """(lab, the UpResult of its first `up`, checks included)."""
    from quizstack.lab import Lab

    lab = Lab(f"cx{os.getpid() % 100000}", topology=load_scenario("complete"))
    try:
        result = stack.up(lab, port=free_port())
        yield lab, result
    finally:
        lab.destroy()
