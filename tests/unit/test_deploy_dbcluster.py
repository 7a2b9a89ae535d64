"""The replicated database of the complete scenario: plan, connection string, etcd and Patroni files."""

import pytest

from quizstack.deploy import ROLES, render, schedule
from quizstack.deploy.plan import build_plan
from quizstack.deploy.roles import Context
from quizstack.errors import ScenarioError
from quizstack.topology import load_scenario, parse_scenario
from quizstack.topology.loader import SCENARIO_DIR

SECRETS = {"database_password": "app", "django_secret_key": "k", "database_superuser_password": "su",
           "database_replication_password": "rep", "database_rewind_password": "rw",
           "admin_password_hash": "pbkdf2_sha256$1$s$h"}


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_scenario("complete"))


def test_two_database_hosts_and_three_consensus_members(plan):
    assert plan.replicated and plan.database_hosts == ("bbdd", "bbdd2")
    assert [str(a) for a in plan.database_addresses] == ["10.2.4.31", "10.2.4.32"]
    assert [n for n, _ in plan.consensus_hosts] == ["bbdd", "bbdd2", "witness"]
    assert plan.failover == (6, 1, 2)
    assert not build_plan(load_scenario("pfinal")).replicated


def test_the_app_servers_reach_the_primary_through_their_local_router(plan):
    assert render.database_url(plan, "pw") == (
        "postgresql://quiz:pw@127.0.0.1:5432/quiz?target_session_attrs=read-write")
    assert render.database_url(build_plan(load_scenario("pfinal")), "pw") == \
        "postgresql://quiz:pw@10.2.4.31:5432/quiz"
    cfg = render.db_router_cfg(plan)
    assert "bind 127.0.0.1:5432" in cfg and "option httpchk GET /primary" in cfg
    assert "rise 1 port 8008 on-marked-down shutdown-sessions" in cfg
    assert "server bbdd 10.2.4.31:5432 check" in cfg and "server bbdd2 10.2.4.32:5432 check" in cfg
    # A second port for reads while there is no primary: any running member.
    reads = cfg.split("frontend postgres_reads")[1]
    assert "bind 127.0.0.1:5433" in reads
    assert "use_backend postgres_standbys if { nbsrv(postgres_standbys) gt 0 }" in reads
    assert "option httpchk GET /replica" in reads and "option httpchk GET /health" in reads
    env = render.app_environment(plan, SECRETS)
    assert env["DATABASE_READ_URL"] == "postgresql://quiz:app@127.0.0.1:5433/quiz"
    assert "DATABASE_READ_URL" not in render.app_environment(build_plan(load_scenario("pfinal")), SECRETS)


def test_the_router_comes_between_the_database_and_the_first_migration(plan):
    phases = [p for role in ROLES for p in role.phases(plan, Context(SECRETS, "/venv"))]
    position = {p.key: i for i, stage in enumerate(schedule(phases)) for p in stage}
    assert position["database: postgresql"] < position["web: database router"] \
        < position["web: migrate"]


def test_etcd_members_are_the_consensus_hosts(plan):
    env = render.etcd_environment(plan, "witness")
    assert 'ETCD_NAME="witness"' in env
    assert ('ETCD_INITIAL_CLUSTER="bbdd=http://10.2.4.31:2380,bbdd2=http://10.2.4.32:2380,'
            'witness=http://10.2.4.33:2380"') in env
    assert 'ETCD_LISTEN_CLIENT_URLS="http://10.2.4.33:2379,http://127.0.0.1:2379"' in env


def test_patroni_is_synchronous_rewinds_and_fails_over_within_its_ttl(plan):
    conf = render.patroni_yml(plan, "bbdd2", SECRETS, "15")
    for line in ("name: 'bbdd2'", "listen: '10.2.4.32:5432'", "listen: '10.2.4.32:8008'",
                 "etcd:\n  hosts: [10.2.4.31:2379, 10.2.4.32:2379, 10.2.4.33:2379]",
                 "ttl: 6", "loop_wait: 1", "retry_timeout: 2",
                 "synchronous_mode: true", "synchronous_mode_strict: false",
                 "use_pg_rewind: true", "- data-checksums",
                 "data_dir: /var/lib/postgresql/15/quiz",
                 "- host replication replicator 10.2.4.31/32 scram-sha-256",
                 "- host quiz quiz 10.2.4.0/24 scram-sha-256",
                 "password: 'rep'"):
        assert line in conf, line
    assert "trust" not in conf


def test_a_timing_patroni_would_reject_fails_before_anything(tmp_path):
    text = (SCENARIO_DIR / "complete.toml").read_text() + "\n[database]\nttl = 4\n"
    with pytest.raises(ScenarioError) as error:
        build_plan(parse_scenario(text, source="fast.toml"))
    assert "loop_wait + 2 x retry_timeout <= ttl" in str(error.value)


def test_two_databases_need_an_odd_consensus_of_three(tmp_path):
    text = (SCENARIO_DIR / "complete.toml").read_text().replace(
        'roles = ["consensus"]', 'roles = []')
    with pytest.raises(ScenarioError) as error:
        parse_scenario(text, source="two.toml")
    assert "role consensus: 2 database hosts need an odd number of consensus hosts" in str(error.value)


def test_etcd_then_patroni_then_the_app_database_before_the_first_migration(plan):
    phases = [p for role in ROLES for p in role.phases(plan, Context(SECRETS, "/venv"))]
    position = {p.key: i for i, stage in enumerate(schedule(phases)) for p in stage}
    assert position["consensus: etcd"] < position["database: patroni"] \
        < position["database: postgresql"] < position["web: migrate"]
    hosts = {p.key: p.hosts for p in phases}
    assert hosts["consensus: etcd"] == ("bbdd", "bbdd2", "witness")
    assert hosts["database: patroni"] == ("bbdd", "bbdd2")
