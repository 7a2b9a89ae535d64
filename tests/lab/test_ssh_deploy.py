"""The same roles over pyinfra's SSH connector, as on real hosts, as root.

A fresh lab's hosts run OpenSSH's sshd (root login by key only, as Debian
ships it) instead of being entered with nsenter. `quizstack deploy` then
configures them over SSH exactly as it would real machines, and the checks
verify the result from the clients. The lab stays hermetic: each SSH
connection is carried by an ssh_config ProxyCommand that opens the TCP
connection from inside the target host's own network namespace.
"""

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from quizstack import cli, stack
from quizstack.deploy.plan import build_plan
from quizstack.topology import load_scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")

SSHD = ("[program:sshd]\n"
        "command=/bin/sh -c 'mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e'\n"
        "autostart=true\nautorestart=true\nredirect_stderr=true\n"
        "stdout_logfile=/var/log/supervisor/sshd.log\n")


@pytest.fixture(scope="module")
def ssh_lab():
    if not shutil.which("sshd") and not os.path.exists("/usr/sbin/sshd"):
        pytest.skip("OpenSSH's server is not installed")
    from quizstack.lab import Lab

    os.makedirs("/srv/quizstack-tests", exist_ok=True)
    root = tempfile.mkdtemp(prefix="ssh-", dir="/srv/quizstack-tests")
    work = tempfile.mkdtemp(prefix="quizstack-ssh-")
    lab = Lab(f"ss{os.getpid() % 100000}", topology=load_scenario("pfinal"), state_root=root)
    try:
        lab.up()
        yield lab, work
    finally:
        lab.destroy()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def start_sshd(lab, key_pub):
    plan = build_plan(lab.topology)
    targets = [h for h in lab.topology.hosts if h not in plan.clients]
    for host in targets:
        lab.run(host, ["sh", "-c", "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys"],
                input=key_pub)
        lab.run(host, ["sh", "-c", "cat > /etc/supervisor/conf.d/sshd.conf && supervisorctl update"],
                input=SSHD)
    deadline = time.monotonic() + 30
    for host in targets:
        address = str(lab.topology.hosts[host].interfaces[0].address)
        while lab.run(host, ["nc", "-z", "-w", "1", address, "22"], check=False).returncode != 0:
            assert time.monotonic() < deadline, f"sshd on {host} does not answer"
            time.sleep(0.1)
    return targets


def test_the_roles_deploy_over_ssh_and_pass_every_check(ssh_lab, ssh_config, capsys):
    lab, work = ssh_lab
    key = os.path.join(work, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    with open(key + ".pub") as f:
        start_sshd(lab, f.read())
    config = os.path.join(work, "ssh_config")
    ssh_config(lab, config)
    argv = ["deploy", "pfinal", "--ssh-key", key, "--ssh-config", config,
            "--known-hosts", os.path.join(work, "known_hosts"),
            "--secrets", os.path.join(work, "secrets")]

    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "deploy: no change" not in first and "change(s)" in first

    # The hosts were reached over SSH, not entered: sshd saw each login.
    log = lab.run("bbdd", ["cat", "/var/log/supervisor/sshd.log"]).stdout
    assert "Accepted publickey for root" in log

    failed = [f"{r.group}: {r.name}: {r.detail}" for r in stack.check_lab(lab) if not r.ok]
    assert not failed

    assert cli.main(argv) == 0
    assert "deploy: no change" in capsys.readouterr().out
    # No SSH connection outlives its deployment (each kept a polling thread).
    import threading

    import paramiko

    assert not [t for t in threading.enumerate() if isinstance(t, paramiko.Transport) and t.is_alive()]
