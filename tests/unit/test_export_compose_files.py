"""quizstack export compose: the project's structure from the scenario, one published port,
health checks and restart policies everywhere, the roles' own files, no secret in the files."""

import ipaddress
import os
import re
import stat
from pathlib import Path

import pytest

from quiz.unavailable import haproxy_errorfile
from quizstack.cli import main
from quizstack.deploy import render
from quizstack.deploy.plan import build_plan
from quizstack import wheels
from quizstack.export import compose, compose_image
from quizstack.export.compose_run import ComposeError, Project
from quizstack.topology import load_scenario
from quizstack.topology.loader import parse_scenario

yaml = pytest.importorskip("yaml")

SCENARIOS = ["pfinal", "complete"]


def _load(name):
    topo = load_scenario(name)
    return topo, build_plan(topo)


def _export(tmp_path, name, **options):
    topo, plan = _load(name)
    compose.write(tmp_path, topo, plan, compose.Options(**options))
    return topo, plan, yaml.safe_load((tmp_path / "docker-compose.yml").read_text())


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_networks_are_the_scenarios_subnets_with_every_container_at_its_address(tmp_path, name):
    topo, plan, doc = _export(tmp_path, name)
    networks = doc["networks"]
    used = {str(a) for h in topo.hosts.values() for a in (i.address for i in h.interfaces)}
    used |= {str(a.address) for g in topo.floating.values() for a in g.addresses}
    for net, spec in networks.items():
        config = spec["ipam"]["config"][0]
        assert config["subnet"] == str(topo.networks[net].subnet)
        # Docker's bridge takes an address no scenario host uses.
        assert config["gateway"] not in used
        assert ipaddress.ip_address(config["gateway"]) in topo.networks[net].subnet
    front = next(n for n in networks if plan.lb_address in topo.networks[n].subnet)
    assert [n for n, spec in networks.items() if not spec["internal"]] == [front]
    services = doc["services"]
    for service, spec in services.items():
        for net, attach in spec["networks"].items():
            assert net in networks
            assert ipaddress.ip_address(attach["ipv4_address"]) in topo.networks[net].subnet
    lb = services[plan.lb_hosts[0]]
    assert lb["networks"][front]["ipv4_address"] == str(plan.lb_address)
    for backend in plan.backends:
        assert str(backend.address) in [a["ipv4_address"] for a in services[backend.name]["networks"].values()]
    assert services[plan.database_host]["networks"] == {
        next(n for n in networks if plan.database_address in topo.networks[n].subnet):
            {"ipv4_address": str(plan.database_address)}}


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_services_are_the_servers_the_balancer_the_database_and_glusterfs(tmp_path, name):
    topo, plan, doc = _export(tmp_path, name)
    services = doc["services"]
    nas = [n for n, _ in plan.storage_hosts]
    assert set(services) == {*plan.web_hosts, plan.lb_hosts[0], plan.database_host, *nas}
    roles = sorted(s["labels"]["quizstack.role"] for s in services.values())
    assert roles == sorted(["web"] * len(plan.backends) + ["storage"] * len(nas) +
                           ["loadbalancer", "database"])
    for (name_, address), spec in zip(plan.storage_hosts, (services[n] for n in nas)):
        assert list(spec["networks"].values()) == [{"ipv4_address": str(address)}]
        assert f"brick-{name_}:{plan.brick.rsplit('/', 1)[0]}" in spec["volumes"]
        assert spec["environment"]["QUIZ_VOLUME"] == (plan.volume if name_ == nas[0] else "")
    for backend in plan.backends:
        server = services[backend.name]
        assert server["image"] == compose.Options().image
        assert server["environment"]["QUIZ_MOUNT_COMMAND"] == render.glusterfs_client_command(plan)
        assert server["devices"] == ["/dev/fuse:/dev/fuse"] and server["cap_add"] == ["SYS_ADMIN"]
        assert server["depends_on"] == {h: {"condition": "service_healthy"}
                                        for h in (plan.database_host, *nas)}
    assert set(services[plan.lb_hosts[0]]["depends_on"]) == set(plan.web_hosts)
    assert set(doc["volumes"]) == {"database", *(f"{k}-{n}" for n in nas for k in ("brick", "glusterd"))}


def test_with_one_shared_volume_instead_every_server_mounts_it_and_there_is_no_storage_node(tmp_path):
    topo, plan, doc = _export(tmp_path, "pfinal", storage="volume")
    services = doc["services"]
    assert set(services) == {*plan.web_hosts, plan.lb_hosts[0], plan.database_host}
    for backend in plan.backends:
        assert f"uploads:{plan.mount}" in services[backend.name]["volumes"]
        assert "devices" not in services[backend.name] and "cap_add" not in services[backend.name]
        assert services[backend.name]["depends_on"] == {plan.database_host: {"condition": "service_healthy"}}
    assert set(doc["volumes"]) == {"database", "uploads"}


@pytest.mark.parametrize("name", SCENARIOS)
def test_only_one_port_is_published_on_loopback_the_firewalls_rule(tmp_path, name):
    topo, plan, doc = _export(tmp_path, name, port=18080)
    published = {s: spec["ports"] for s, spec in doc["services"].items() if spec.get("ports")}
    assert published == {plan.lb_hosts[0]: [f"127.0.0.1:18080:{plan.port}"]}
    assert not any("expose" in spec or spec.get("network_mode") == "host"
                   for spec in doc["services"].values())


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_service_has_a_health_check_and_a_restart_policy(tmp_path, name):
    topo, plan, doc = _export(tmp_path, name)
    for service, spec in doc["services"].items():
        assert spec["restart"] == "unless-stopped", service
        check = spec["healthcheck"]
        assert check["test"][0] == "CMD" and check["interval"] and check["retries"] >= 1, service
    assert f"http://{plan.backends[0].address}:{plan.app_port}/healthz" in \
        " ".join(doc["services"][plan.backends[0].name]["healthcheck"]["test"])
    assert "pg_isready" in doc["services"][plan.database_host]["healthcheck"]["test"]
    # The balancer's own check asks HAProxy's socket, never takes a turn in the round-robin.
    lb_check = " ".join(doc["services"][plan.lb_hosts[0]]["healthcheck"]["test"])
    assert "/run/haproxy/admin.sock" in lb_check and "http://" not in lb_check
    # Compose reads $NAME as its own variables: every dollar meant for a shell is doubled.
    text = (tmp_path / "docker-compose.yml").read_text()
    assert not re.search(r"(?<!\$)\$(?!\$)", text.replace("$$", ""))


@pytest.mark.parametrize("name", SCENARIOS)
def test_haproxy_gunicorn_and_postgresql_get_the_files_the_roles_render(tmp_path, name):
    topo, plan, doc = _export(tmp_path, name)
    assert (tmp_path / "haproxy/haproxy.cfg").read_text() == render.haproxy_cfg(plan)
    assert (tmp_path / "haproxy/quiz-503.http").read_bytes() == haproxy_errorfile().encode()   # CRLF kept
    for backend in plan.backends:
        assert (tmp_path / f"gunicorn/{backend.name}.conf.py").read_text() == \
            render.gunicorn_conf(plan, backend)
    assert (tmp_path / "postgres/pg_hba.conf").read_text() == render.pg_hba_conf(plan)
    assert f"listen_addresses = '{plan.database_address}'" in \
        (tmp_path / "postgres/postgresql.conf").read_text()
    mounted = {v.split(":")[1] for spec in doc["services"].values() for v in spec.get("volumes", [])
               if v.startswith("./")}
    assert {"/etc/haproxy/haproxy.cfg", render.HAPROXY_503, "/etc/quiz/gunicorn.conf.py",
            "/etc/quiz-db"} <= mounted


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_secret_is_in_the_files_only_in_0600_files_they_reference(tmp_path, name):
    topo, plan, doc = _export(tmp_path, name)
    folder = tmp_path / "secrets"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    values = {}
    for secret in compose.SECRETS:
        path = folder / secret
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        values[secret] = path.read_text().strip()
        assert len(values[secret]) >= 32
        assert doc["secrets"][secret] == {"file": f"./secrets/{secret}"}
    for path in tmp_path.rglob("*"):
        if path.is_file() and folder not in path.parents:
            text = path.read_text()
            assert not any(v in text for v in values.values()), path
    assert "secrets/" in (tmp_path / ".gitignore").read_text().split()
    # A second export keeps them (a running database has the first password).
    compose.write(tmp_path, topo, plan, compose.Options())
    assert {s: (folder / s).read_text().strip() for s in compose.SECRETS} == values


def test_the_database_url_names_the_password_only_by_a_mark(tmp_path):
    topo, plan, doc = _export(tmp_path, "complete")
    env = doc["services"]["s1"]["environment"]
    assert env["QUIZ_DATABASE_URL"] == (f"postgresql://quiz:{compose.PASSWORD_MARK}@"
                                        f"{plan.database_addresses[0]}:5432/quiz")
    assert "DATABASE_URL" not in env and "DJANGO_SECRET_KEY" not in env


def test_the_image_builds_on_the_imported_base_from_wheels_and_its_entrypoints_are_python(tmp_path):
    _export(tmp_path, "pfinal")
    dockerfile = (tmp_path / "image/Dockerfile").read_text()
    assert dockerfile.splitlines()[2] == f"FROM {compose.base_tag()}"
    assert "--no-index" in dockerfile
    for script in ("quiz-server", "quiz-db", "quiz-nas"):
        path = tmp_path / "image/bin" / script
        assert os.access(path, os.X_OK)
        compile(path.read_text(), script, "exec")


def test_a_scenario_the_export_cannot_carry_is_refused_with_a_clear_error():
    text = (Path(compose.__file__).parents[1] / "scenarios/pfinal.toml").read_text()
    topo = parse_scenario(text.replace('[service]\n', '[service]\nbalance = "load"\n'),
                          source="load.toml", default_name="load")
    with pytest.raises(compose.ExportError, match="load agent"):
        compose.files(topo, build_plan(topo))
    topo, plan = _load("pfinal")
    with pytest.raises(compose.ExportError, match="project name"):
        compose.files(topo, plan, compose.Options(name="Not A Name"))
    with pytest.raises(compose.ExportError, match="port 70000"):
        compose.files(topo, plan, compose.Options(port=70000))
    with pytest.raises(compose.ExportError, match="storage 'nfs'"):
        compose.files(topo, plan, compose.Options(storage="nfs"))


def test_the_cli_writes_the_project_and_refuses_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QUIZSTACK_STATE_ROOT", str(tmp_path / "state"))
    assert main(["export", "compose", "pfinal", "-o", str(tmp_path / "out"), "--port", "18081"]) == 0
    assert "127.0.0.1:18081:80" in (tmp_path / "out/docker-compose.yml").read_text()
    assert main(["compose", "check", str(tmp_path / "out")]) == 1
    assert "compose quiz-pfinal: not up (quizstack compose up" in capsys.readouterr().err
    assert main(["export", "compose", "nosuch", "-o", str(tmp_path / "x")]) == 1
    assert "no such scenario" in capsys.readouterr().err
    assert main(["compose", "check", str(tmp_path)]) == 1
    assert "not a Compose export" in capsys.readouterr().err
    with pytest.raises(ComposeError, match="not a Compose export"):
        Project(tmp_path)


def test_the_mirror_is_read_from_apt_sources_in_both_formats():
    deb822 = ("Types: deb\n# a comment inside the stanza\nURIs: http://mirror.example/debian\n"
              "Suites: bookworm bookworm-updates\nComponents: main contrib\n\n"
              "Types: deb\nURIs: https://other.example/apt\nSuites: nodistro\nComponents: main\n")
    one_line = ("deb [signed-by=/k.gpg] http://mirror.example/debian-security bookworm-security main\n"
                "# deb http://commented.example/debian bookworm main\n"
                "deb-src http://mirror.example/debian bookworm main\n")
    assert compose_image.parse_sources([deb822, one_line]) == [
        "deb http://mirror.example/debian bookworm main contrib",
        "deb http://mirror.example/debian bookworm-updates main contrib",
        "deb http://mirror.example/debian-security bookworm-security main"]


def test_the_image_gets_pyprojects_dependencies_but_the_deployments_own(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = [\n  "Django>=5.2,<6",\n'
                         '  "psycopg[binary]>=3.1,<4",\n  "pyinfra>=3.10,<4",\n  "bcrypt>=4",\n]\n')
    assert wheels.app_requirements(pyproject) == ["Django>=5.2,<6", "psycopg[binary]>=3.1,<4"]
    pinned = wheels.pinned_requirements(pyproject)
    assert pinned[0].startswith("Django==") and pinned[1].startswith("psycopg[binary]==")


def test_on_a_debian_13_machine_the_image_takes_its_release_from_the_same_mirrors(tmp_path, monkeypatch):
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie trixie-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: trixie-security\nComponents: main\n")
    monkeypatch.setattr(compose_image, "SOURCES", (str(tmp_path),))
    assert compose_image.mirror_lines() == [
        f"deb http://mirror.example/debian {compose.SUITE} main",
        f"deb http://mirror.example/debian {compose.SUITE}-updates main",
        f"deb http://mirror.example/debian-security {compose.SUITE}-security main"]


def test_wheels_are_fetched_for_every_supported_debian_python():
    from quizstack import debian

    assert {"3.11", "3.13"} <= set(wheels.target_pythons())
    assert {r.python for r in debian.RELEASES.values()} <= set(wheels.target_pythons())
    argv = wheels.download_argv("3.13", ["Django==5.2"], "/tmp/w", machine="x86_64")
    assert argv[argv.index("--python-version") + 1] == "3.13" and "cp313" in argv
    assert "manylinux_2_36_x86_64" in argv and "manylinux2014_x86_64" in argv
    assert argv[-3:] == ["-d", "/tmp/w", "Django==5.2"]


@pytest.mark.parametrize("name, python, ok", [
    ("django-5.2.20-py3-none-any.whl", "3.11", True),
    ("markupsafe-3.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", "3.11", True),
    ("markupsafe-3.0.4-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", "3.11", False),
    ("markupsafe-3.0.4-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", "3.13", True),
    ("cryptography-46.0.0-cp311-abi3-manylinux_2_28_x86_64.whl", "3.13", True),
    ("cryptography-46.0.0-cp314-abi3-manylinux_2_28_x86_64.whl", "3.13", False),
    ("notawheel.whl", "3.11", False),
])
def test_the_image_takes_the_wheels_of_its_own_python(name, python, ok):
    assert wheels.installable(name, python) is ok
