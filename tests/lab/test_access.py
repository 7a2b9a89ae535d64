"""The operators' way in on the complete lab, as root: ges, keys only, SSH through it.

Uses the complete lab shared by the lab tests (conftest.py). Every
connection starts from c1's side and crosses the firewall, as an operator's
would.
"""

import os
import subprocess

import pytest

from quizstack import cli, stack
from quizstack.deploy import render
from quizstack.deploy.plan import build_plan

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")


def ssh(lab, *args, env=None):
    argv = ["ssh", "-F", str(stack.lab_ssh_config(lab)), "-o", "BatchMode=yes", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_up_checked_the_way_in(complete):
    _, result = complete
    rows = {r.name: r for r in result.checks if r.group == "access"}
    assert len(rows) == 4 and all(r.ok for r in rows.values()), rows
    scans = [r for r in result.checks if "port scan" in r.name]
    assert scans and all(r.ok and "10.2.2.31:22" in r.detail for r in scans)


def test_quizstack_ssh_reaches_a_host_through_ges(complete, capfd):
    lab, _ = complete
    assert cli.main(["ssh", "--lab", lab.name, "s2", "--", "hostname"]) == 0
    assert capfd.readouterr().out.strip() == "s2"
    assert cli.main(["ssh", "--lab", lab.name, "c2"]) == 1
    assert "c2 is not on the management network" in capfd.readouterr().err
    # On s2, the login came from ges's management address, with ges's key.
    log = lab.run("s2", ["cat", "/var/log/supervisor/sshd.log"]).stdout
    assert "Accepted publickey for root from 10.2.9.2" in log


def test_a_password_login_to_ges_is_refused_even_with_the_right_password(complete, tmp_path):
    lab, _ = complete
    password = "correct horse battery staple"
    shadow = lab.run("ges", ["grep", "^root:", "/etc/shadow"]).stdout.strip()
    lab.run("ges", ["chpasswd"], input=f"root:{password}\n")
    try:
        assert lab.run("ges", ["grep", "^root:", "/etc/shadow"]).stdout.strip() != shadow
        askpass = tmp_path / "askpass"
        askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
        askpass.chmod(0o700)
        env = dict(os.environ, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
        argv = ["ssh", "-F", str(stack.lab_ssh_config(lab)), "-o", "PubkeyAuthentication=no",
                "-o", "PreferredAuthentications=password,keyboard-interactive",
                "-o", "NumberOfPasswordPrompts=1", "ges", "true"]
        refused = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        assert refused.returncode == 255
        assert "Permission denied (publickey)" in refused.stderr
    finally:
        lab.run("ges", ["usermod", "-p", shadow.split(":")[1], "root"])
    # Only the operators' RSA key opens ges: ges's own Ed25519 key does not.
    keys = stack.keys_of(lab.topology, lab.state_dir / "secrets")
    assert ssh_with_only(lab, keys.management.path).returncode == 255
    assert ssh_with_only(lab, keys.operator.path).returncode == 0


def ssh_with_only(lab, key):
    """ssh to ges from c1 offering one key and nothing else (no config file)."""
    from quizstack.lab import plan as lab_plan

    keys = stack.keys_of(lab.topology, lab.state_dir / "secrets")
    netns = lab_plan.netns_path(lab_plan.host_netns(lab.name, "c1"))
    argv = ["ssh", "-F", "/dev/null", "-o", f"ProxyCommand=nsenter --net={netns} nc %h %p",
            "-o", f"UserKnownHostsFile={keys.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-i", key, "root@10.2.2.31", "true"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_deploy_over_ssh_through_ges_reconfigures_the_loaded_firewall(complete, capsys):
    lab, _ = complete
    plan = build_plan(lab.topology)
    # The firewall's ruleset is loaded: nothing reaches its sshd but ges.
    assert "table inet quizstack" in lab.run("fw1", ["nft", "list", "tables"]).stdout
    lab.run("fw1", ["sh", "-c", "echo '# edited by hand' >> /etc/nftables.conf"])
    secrets = lab.state_dir / "secrets"
    # The lab's own version of its scenario (as `up` made it).
    argv = ["deploy", str(lab.state_dir / "scenario.toml"), "--ssh-config", str(stack.lab_ssh_config(lab)),
            "--secrets", str(secrets)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "through ges" in out and "firewall: nftables: " in out
    assert lab.run("fw1", ["cat", "/etc/nftables.conf"]).stdout == render.nftables_conf(plan)
    log = lab.run("fw1", ["cat", "/var/log/supervisor/sshd.log"]).stdout
    assert "Accepted publickey for root from 10.2.9.2" in log
