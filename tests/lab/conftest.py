"""One complete lab for every lab test that needs it, brought up once per run.

Bringing the complete scenario up takes most of a minute, so the modules
that need it (access, chaos, monitoring) share this one; each leaves it
healthy (faults healed, services running) for the next.
"""

import os
import socket
import subprocess
import time

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


@pytest.fixture(scope="session")
def deploy_over_ssh(ssh_config):
    """deploy(lab, work, scenario): see _deploy_systems_over_ssh."""
    return lambda lab, work, scenario="systems": _deploy_systems_over_ssh(lab, work, ssh_config, scenario)


def _deploy_systems_over_ssh(lab, work, ssh_config, scenario):
    """Up the lab's hosts, give every full system the test's key and deploy them
    over SSH as real machines; returns (the deploy argv, its seconds)."""
    from quizstack import cli

    lab.up()
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    for host in (h.name for h in lab.topology.hosts.values() if h.system):
        lab.run(host, ["sh", "-c", "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys"],
                input=(work / "id_ed25519.pub").read_text())
    ssh_config(lab, work / "ssh_config")
    # The lab's own secrets: `up` and later deployments use the same ones.
    argv = ["deploy", scenario, "--ssh-key", str(key), "--ssh-config", str(work / "ssh_config"),
            "--known-hosts", str(work / "known_hosts"), "--secrets", str(lab.state_dir / "secrets")]
    started = time.monotonic()
    code = cli.main(argv)
    assert code == 0, "the first deployment over SSH failed"
    return argv, time.monotonic() - started
