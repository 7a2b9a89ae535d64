"""One complete lab for every lab test that needs it, brought up once per run.

Bringing the complete scenario up takes most of a minute, so the modules
that need it (access, chaos, monitoring) share this one; each leaves it
healthy (faults healed, services running) for the next.

The cgroup layout is the machine's (lab/cgroups.py): a test of a fault that
needs a mechanism this machine lacks is marked `needs_fault("slow")` and
skips with the layout's own sentence saying what is missing; one that reads
a v1 controller's files is marked `needs_v1("freezer")`; and the fixture
`forced_v2` runs a test's faults through the v2 hierarchy. On a hybrid
machine all of them run; on a v2-only one the v1 tests skip, as the v2 tests
cover the same faults there.
"""

import os
import socket
import subprocess
import time

import pytest

from quizstack import stack
from quizstack.lab import cgroups
from quizstack.topology import load_scenario


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_fault(*kinds): skip, saying what is missing, "
                                       "unless this machine's cgroups can apply these faults")
    config.addinivalue_line("markers", "needs_v1(controller): skip unless the cgroup v1 "
                                       "hierarchy of this controller is mounted")


def pytest_runtest_setup(item):
    """The markers above, judged before any fixture starts a lab for nothing."""
    marks = list(item.iter_markers("needs_fault")) + list(item.iter_markers("needs_v1"))
    if not marks:
        return
    layout = cgroups.detect()
    for mark in item.iter_markers("needs_fault"):
        for kind in mark.args:
            why = layout.missing(kind)
            if why:
                pytest.skip(why)
    for mark in item.iter_markers("needs_v1"):
        controller = mark.args[0]
        if controller not in layout.v1:
            pytest.skip(f"cgroup v1 {controller} not mounted (a v2-only machine): the v2 tests cover it")
        if layout.forced not in (None, "v1"):
            pytest.skip(f"{cgroups.ENV}={layout.forced} chooses another mechanism than "
                        f"the cgroup v1 {controller} this test reads")


@pytest.fixture
def forced_v2(monkeypatch):
    """QUIZSTACK_CGROUP=v2 for the test: its faults go through the v2 hierarchy
    (on a hybrid machine, the controller-less /sys/fs/cgroup/unified), whose
    mount point it returns. Skips where there is none with cgroup.freeze."""
    layout = cgroups.detect()
    if layout.v2 is None or not layout.v2_freeze:
        pytest.skip("no cgroup v2 hierarchy with cgroup.freeze here")
    monkeypatch.setenv(cgroups.ENV, "v2")
    return layout.v2


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
