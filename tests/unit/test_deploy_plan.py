"""The deployment plan and the files rendered from it, for the pfinal scenario."""

import dataclasses
import subprocess
import shutil
from ipaddress import IPv4Address, IPv4Network

import pytest

from quizstack.deploy import render
from quizstack.deploy.plan import build_plan
from quizstack.errors import ScenarioError
from quizstack.topology import load_scenario


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_scenario("pfinal"))


def test_plan_finds_who_talks_to_whom(plan):
    assert plan.database_host == "bbdd"
    assert plan.database_address == IPv4Address("10.2.4.31")
    assert plan.app_subnet == IPv4Network("10.2.4.0/24")
    assert [(b.name, str(b.address)) for b in plan.backends] == [
        ("s1", "10.2.3.11"), ("s2", "10.2.3.12"), ("s3", "10.2.3.13")]
    assert [n for n, _ in plan.storage_hosts] == ["nas1", "nas2", "nas3"]
    assert plan.lb_address == IPv4Address("10.2.2.2")
    assert plan.fw_outside == (("eth0", IPv4Network("10.2.1.0/24")),)
    assert plan.clients == ("c1", "c2")
    assert plan.media_root == "/var/lib/quiz/nas/media"


def test_two_storage_nodes_for_replica_three_fail_before_anything(tmp_path):
    lines, skip = [], False
    with open(load_scenario("pfinal").source) as f:
        for line in f.read().splitlines():
            if line.startswith("[hosts."):
                skip = line.strip() == "[hosts.nas3]"
            if not skip:
                lines.append(line)
    bad = tmp_path / "two-nas.toml"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ScenarioError) as error:
        build_plan(load_scenario(str(bad)))
    assert "replica" in str(error.value) and "2 storage hosts" in str(error.value)
    assert "two-nas.toml" in str(error.value)


def test_pg_hba_admits_only_the_app_role_from_the_app_subnet(plan):
    rules = [line.split() for line in render.pg_hba_conf(plan).splitlines()
             if line and not line.startswith("#")]
    assert ["host", "quiz", "quiz", "10.2.4.0/24", "scram-sha-256"] in rules
    assert not any("trust" in rule for rule in rules)
    assert all(rule[0] == "local" for rule in rules if rule[-1] != "scram-sha-256")


def test_postgresql_listens_only_on_its_lan4_address(plan):
    assert "listen_addresses = '10.2.4.31'" in render.postgresql_conf(plan)


def test_haproxy_balances_round_robin_over_every_server_with_health_checks(plan):
    cfg = render.haproxy_cfg(plan)
    assert "balance roundrobin" in cfg
    assert "option httpchk GET /healthz" in cfg
    assert "option redispatch" in cfg and "retries 3" in cfg
    assert "bind 10.2.2.2:80" in cfg
    assert "http-response set-header X-Server %s" in cfg
    for name, address in (("s1", "10.2.3.11"), ("s2", "10.2.3.12"), ("s3", "10.2.3.13")):
        assert f"server {name} {address}:8000 check" in cfg
    assert "stats socket /run/haproxy/admin.sock" in cfg
    # Reads are retried elsewhere after 2 s; writes only when their form's token makes it safe.
    assert "http-request set-timeout server 2s if METH_GET || replayable small" in cfg
    assert "http-request disable-l7-retry unless METH_GET || replayable small" in cfg
    assert "acl replayable urlp(once) -m found" in cfg


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed")
@pytest.mark.parametrize("scenario", ["pfinal", "complete"])
def test_haproxy_accepts_the_rendered_configurations(scenario, tmp_path):
    from quiz.unavailable import haproxy_errorfile

    plan = build_plan(load_scenario(scenario))
    page = tmp_path / "503.http"
    page.write_text(haproxy_errorfile())
    files = [render.haproxy_cfg(plan).replace(render.HAPROXY_503, str(page))]
    if plan.replicated:
        files.append(render.db_router_cfg(plan))   # the app servers' router to the primary
    for index, text in enumerate(files):
        path = tmp_path / f"haproxy-{index}.cfg"
        path.write_text(text)
        done = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_nftables_drops_by_default_and_opens_only_the_service(plan):
    rules = render.nftables_conf(plan)
    assert rules.count("policy drop;") == 2  # input and forward
    accepts = [line.strip() for line in rules.splitlines() if line.strip().endswith("accept")
               and "policy" not in line]
    assert accepts == [
        'iif "lo" accept',
        "ct state established,related accept",
        'iifname { "eth0" } ip daddr 10.2.2.2 tcp dport 80 '
        'tcp flags & (fin | syn | rst | ack) == syn ct state new accept',
        'iifname { "eth0" } ip daddr 10.2.2.2 icmp type echo-request accept',
    ]


def test_app_environment_points_at_bbdd(plan):
    env = render.app_environment(plan, {"database_password": "pw", "django_secret_key": "k",
                                        "admin_password_hash": "pbkdf2_sha256$9$salt$h+a/sh="})
    assert env["DATABASE_URL"] == "postgresql://quiz:pw@10.2.4.31:5432/quiz"
    assert env["QUIZ_MEDIA_ROOT"] == "/var/lib/quiz/nas/media"
    assert render.env_file(env).count("\n") == len(env) + 1
    # pfinal is a teaching setup: the seed's admin/1234, no hash. Elsewhere the servers
    # get the administrator's hash only, quoted so sh does not read its $ signs.
    assert "QUIZ_ADMIN_PASSWORD_HASH" not in env
    served = render.app_environment(dataclasses.replace(plan, demo=False), {
        "database_password": "pw", "django_secret_key": "k",
        "admin_password_hash": "pbkdf2_sha256$9$salt$h+a/sh="})
    assert "QUIZ_ADMIN_PASSWORD_HASH='pbkdf2_sha256$9$salt$h+a/sh='\n" in render.env_file(served)
    assert env["DJANGO_ALLOWED_HOSTS"].split(",") == ["10.2.2.2", "10.2.3.11", "10.2.3.12",
                                                      "10.2.3.13", "127.0.0.1", "localhost"]
    assert env["QUIZ_DEMO_USERS"] == "1"   # pfinal is a declared teaching setup
    assert env["QUIZ_HEALTH_DETAIL_FROM"] == "10.2.3.1"


def test_the_env_file_reads_the_same_in_sh(plan, tmp_path):
    import subprocess

    env = {"A": "plain-value_1", "B": "pbkdf2_sha256$1000$s$x/y+z=", "C": "a b"}
    path = tmp_path / "quiz.env"
    path.write_text(render.env_file(env))
    shown = subprocess.run(["sh", "-c", f"set -a; . {path}; set +a; printf '%s|%s|%s' \"$A\" \"$B\" \"$C\""],
                           capture_output=True, text=True).stdout
    assert shown == "plain-value_1|pbkdf2_sha256$1000$s$x/y+z=|a b"


def test_gunicorn_binds_the_servers_lan3_address(plan):
    conf = render.gunicorn_conf(plan, plan.backends[1])
    assert "bind = '10.2.3.12:8000'" in conf
    assert "forwarded_allow_ips = '10.2.3.1'" in conf
    compile(conf, "gunicorn.conf.py", "exec")


def test_the_volume_is_mounted_with_every_storage_node_as_volfile_server(plan):
    command = render.glusterfs_client_command(plan)
    for address in ("10.2.4.21", "10.2.4.22", "10.2.4.23"):
        assert f"--volfile-server={address}" in command
    assert command.endswith("--volfile-id=nas /var/lib/quiz/nas'")
    assert "umount -l /var/lib/quiz/nas" in command
    assert render.fstab_line(plan) == (
        "10.2.4.21:/nas /var/lib/quiz/nas glusterfs "
        "defaults,noauto,_netdev,"
        "backup-volfile-servers=10.2.4.22:10.2.4.23 0 0\n")


def test_supervisor_program_oneshot_and_daemon():
    daemon = render.supervisor_program("quiz", "/bin/true", user="www-data")
    assert "[program:quiz]" in daemon and "autorestart=true" in daemon and "user=www-data" in daemon
    oneshot = render.supervisor_program("nftables", "nft -f /etc/nftables.conf", oneshot=True)
    assert "autorestart=false" in oneshot and "startsecs=0" in oneshot


def test_independent_phases_run_side_by_side_and_the_firewall_last(plan):
    from quizstack.deploy import ROLES, schedule
    from quizstack.deploy.roles import Context

    phases = [p for role in ROLES for p in role.phases(plan, Context({}, "/venv"))]
    stages = [[p.key for p in stage] for stage in schedule(phases)]
    assert stages[0] == ["database: postgresql", "storage: glusterd", "web: configure"]
    position = {key: i for i, stage in enumerate(stages) for key in stage}
    assert position["storage: volume"] < position["web: mount"] < position["web: gunicorn"]
    assert position["database: postgresql"] < position["web: migrate"] < position["web: gunicorn"]
    assert position["web: gunicorn"] < position["loadbalancer: haproxy"]
    assert stages[-1] == ["firewall: nftables"]
    for stage in schedule(phases):
        hosts = [h for p in stage for h in p.hosts]
        assert len(hosts) == len(set(hosts))


def test_the_app_unit_for_systemd_hosts_waits_for_the_volume(plan):
    unit = render.quiz_systemd_unit("/opt/q/bin/gunicorn -c /etc/quiz/gunicorn.conf.py x")
    assert "Requires=quiz-volume.service" in unit
    assert f"mountpoint -q {plan.mount}" in render.volume_systemd_unit(plan.mount)
    assert "EnvironmentFile=/etc/quiz/quiz.env" in unit
    assert "ExecStart=/opt/q/bin/gunicorn -c /etc/quiz/gunicorn.conf.py x" in unit


def test_every_directory_down_to_the_app_is_listed_once_outermost_first():
    from quizstack.deploy.web import ancestors

    assert ancestors(["/root/q/.venv", "/root/q/src/quiz"]) == [
        "/root", "/root/q", "/root/q/.venv", "/root/q/src", "/root/q/src/quiz"]
