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


def _write_ssh_config(lab, path):
    netns = {h["name"]: h["netns"] for h in lab.status()["hosts"]}
    with open(path, "w") as f:
        for name, host in lab.topology.hosts.items():
            f.write(f"Host {host.interfaces[0].address}\n"
                    f"    ProxyCommand nsenter --net=/run/netns/{netns[name]} nc %h %p\n")


@pytest.fixture(scope="session")
def ssh_config():
    """write(lab, path): an ssh_config reaching each lab host by its first address with no
    route into the lab: the TCP connection is opened inside the host's own namespace."""
    return _write_ssh_config


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
