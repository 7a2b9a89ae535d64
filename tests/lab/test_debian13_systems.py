"""Debian 13 (trixie) full systems, deployed over SSH from this machine, as root.

The `systems` scenario with `release = "trixie"`: every host but the clients
boots Debian 13 with systemd (a base of that release, from the machine's own
mirrors), and `quizstack deploy` configures them over SSH with the same roles
that configure Debian 12 hosts — the roles read each host's facts (its
PostgreSQL version, its python3) rather than assuming a release. On a Debian
12 machine this is a deployment to the other release; the Debian 12 systems
beside it (test_full_systems.py) keep today's release honest.
"""

import os
import socket

import pytest

from quizstack import cli, stack
from quizstack.lab import Lab
from quizstack.topology import load_scenario
from quizstack.topology.loader import scenario_path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trixie_systems(path):
    text = scenario_path("systems").read_text().replace('hosts = "system"\n',
                                                        'hosts = "system"\nrelease = "trixie"\n', 1)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def deployed(lab_state_root, tmp_path_factory, deploy_over_ssh):
    work = tmp_path_factory.mktemp("ssh13")
    scenario = trixie_systems(work / "systems13.toml")
    lab = Lab(f"ft{os.getpid() % 100000}", topology=load_scenario(scenario))
    try:
        argv, seconds = deploy_over_ssh(lab, work, str(scenario))
        lab.open_forward(port=free_port())
        yield lab, argv, seconds
    finally:
        lab.destroy()


def sh(lab, host, script, **kw):
    return lab.run(host, ["sh", "-c", script], **kw).stdout


def test_every_system_runs_debian_13_with_its_own_versions(deployed):
    lab, _, _ = deployed
    for host in ("fw", "s1", "bbdd"):
        assert sh(lab, host, ". /etc/os-release; echo $VERSION_CODENAME").strip() == "trixie"
    # The database role found trixie's PostgreSQL (17), not bookworm's (15).
    assert sh(lab, "bbdd", "pg_lsclusters -h | cut -d' ' -f1,2,4").split() == ["17", "quiz", "online"]
    # QUIZ's release installed from the wheels made for trixie's python3.
    assert sh(lab, "s1", "ls /opt/quiz/current/lib").split() == ["python3.13"]
    assert sh(lab, "s1", "/opt/quiz/current/bin/python -c 'import psycopg, PIL; print(psycopg.pq.__impl__)'"
              ).strip() == "binary"
    # A namespace client still runs the machine's own programs.
    assert sh(lab, "c1", "test -f /etc/quizstack-base || echo machine").strip() == "machine"


def test_deployed_over_ssh_every_check_passes_and_a_second_run_changes_nothing(deployed, capsys):
    lab, argv, seconds = deployed
    rows = stack.check_lab(lab, ports=None)
    assert not [f"{r.group}: {r.name}: {r.detail}" for r in rows if not r.ok]
    platform = [r for r in rows if r.group == "platform"]
    assert [r.detail for r in platform] == ["Debian 13 (trixie): fw, lb, s1, s2, s3, nas1, nas2, nas3, bbdd"]
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "deploy: no change" in capsys.readouterr().out
    print(f"Debian 13 systems: first deployment over SSH {seconds:.0f} s")
