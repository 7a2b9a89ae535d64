"""QUIZ shipped to servers that do not share our files: the release's install and units."""

from quizstack.deploy import render, ship
from quizstack.topology import load_scenario

RELEASE = ship.Release(id="abc123def456",
                       wheels=("/cache/Django-5.2-py3-none-any.whl",
                               "/cache/quizstack-0.1.0-py3-none-any.whl"),
                       requirements=("Django==5.2", "psycopg[binary]==3.2.1"))


def test_a_release_installs_offline_from_its_own_wheels_into_its_own_environment():
    command = ship.install_command(RELEASE)
    venv = "/opt/quiz/releases/abc123def456/venv"
    assert command.startswith(f"rm -rf {venv} && python3 -m venv {venv} && ")
    # No index anywhere: the servers need no access to PyPI.
    assert command.count("--no-index") == 2 and "--find-links /opt/quiz/releases/abc123def456/wheels" in command
    assert "Django==5.2 'psycopg[binary]==3.2.1'" in command
    assert "--no-deps /opt/quiz/releases/abc123def456/wheels/quizstack-0.1.0-py3-none-any.whl" in command
    # The marker comes last: a release cut short is made again.
    assert command.endswith("touch /opt/quiz/releases/abc123def456/.complete")


def test_the_units_are_hardened_and_restart_by_themselves():
    for unit in (render.quiz_systemd_unit("/opt/quiz/current/bin/gunicorn"),
                 render.agent_systemd_unit("python3 agent.py"),
                 render.db_router_systemd_unit("haproxy -f x")):
        for line in ("Restart=always", "ProtectSystem=full", "PrivateTmp=yes", "NoNewPrivileges=yes"):
            assert line in unit.splitlines()
    # The app server after the volume, which is mounted by a unit that tries until
    # the storage answers (all hosts booting at once), not once at boot.
    quiz = render.quiz_systemd_unit("/opt/quiz/current/bin/gunicorn").splitlines()
    assert "Requires=quiz-volume.service" in quiz
    assert any(line.startswith("After=") and "quiz-volume.service" in line for line in quiz)
    volume = render.volume_systemd_unit("/var/lib/quiz/nas")
    assert "until mountpoint -q /var/lib/quiz/nas; do mount /var/lib/quiz/nas || sleep 2; done" in volume


def test_the_systems_scenario_is_the_seeds_figure_on_whole_systems():
    systems, pfinal = load_scenario("systems"), load_scenario("pfinal")
    assert list(systems.hosts) == list(pfinal.hosts)
    for name, host in systems.hosts.items():
        assert host.interfaces == pfinal.hosts[name].interfaces
        assert host.system == ("client" not in host.roles)
