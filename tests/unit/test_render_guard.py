"""The guard's rules, rendered from the plan: each back-end host admits exactly its users.

The rules are read back from the rendered text (port -> the sources a rule
names), so what is asserted is what nft would load: on the complete
scenario each database, consensus and storage host admits each of its ports
from exactly the intended peers and from nobody else; a server added to the
scenario is admitted with nothing else to edit; the file passes `nft -c`;
Patroni's REST API wants a login and a database host for a change; the
volume admits the app servers only; a scale runs the guard
first on all its hosts. The first load lets open connections carry on
(they are picked up mid-stream), the far ends of this host's own included.
"""

import re
import shutil
import subprocess

import pytest

from quizstack.deploy import ROLES, guard, render, restrict, schedule, storage
from quizstack.deploy import render_guard as rg
from quizstack.deploy.plan import build_plan
from quizstack.deploy.roles import Context, Phase
from quizstack.topology import load_scenario, parse_scenario
from quizstack.topology.loader import SCENARIO_DIR

S4 = '''
[hosts.s4]
roles = ["web"]
interfaces = [
    { network = "LAN3", address = "10.2.3.14" },
    { network = "LAN4", address = "10.2.4.14" },
    { network = "MGMT", address = "10.2.9.34" },
]
routes = [{ to = "10.2.0.0/16", via = "10.2.3.1" }]
'''

APPS = {"10.2.4.11", "10.2.4.12", "10.2.4.13"}
GES, NAGIOS = {"10.2.9.2"}, {"10.2.9.3"}
ANYWHERE = {"*"}


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_scenario("complete"))


def parsed(text):
    """({port or "icmp": sources} it admits, {port: sources} whose replies it takes),
    from a rendered guard; sources are address strings ("*" for any), and a
    rule for some of the host's addresses only is keyed "port@address,..."."""
    admitted, replies = {}, {}
    for line in text.splitlines():
        line = line.strip()
        if not line.endswith("accept") or line.startswith(("iif", "ct ")):
            continue
        sources = re.search(r"ip saddr (\{ [^}]* \}|\S+)", line)
        sources = set(sources.group(1).strip("{} ").split(", ")) if sources else ANYWHERE
        if "icmp type echo-request" in line:
            admitted.setdefault("icmp", set()).update(sources)
            continue
        ports = re.search(r"tcp (dport|sport) (\{ [^}]* \}|\S+)", line)
        found = admitted if ports.group(1) == "dport" else replies
        to = re.search(r"ip daddr (\{ [^}]* \}|\S+)", line)
        to = "@" + ",".join(to.group(1).strip("{} ").split(", ")) if to else ""
        if found is replies:
            # The far end of a connection this host opened: never a SYN.
            assert "tcp flags & syn == 0 ct state new" in line, line
        for port in ports.group(2).strip("{} ").split(", "):
            found.setdefault(port + to, set()).update(sources)
    return admitted, replies


def admitted(text):
    return parsed(text)[0]


def replies(text):
    return parsed(text)[1]


def test_the_database_consensus_and_storage_hosts_are_guarded_and_no_other(plan):
    assert rg.guarded_hosts(plan) == ("bbdd", "bbdd2", "witness", "nas1", "nas2", "nas3")
    assert rg.guarded_hosts(build_plan(load_scenario("pfinal"))) == ("bbdd", "nas1", "nas2", "nas3")


def test_a_database_host_admits_postgresql_and_patroni_from_the_servers_and_its_peer(plan):
    assert admitted(rg.guard_nft(plan, "bbdd")) == {
        "22": GES, "22@10.2.4.31": ANYWHERE, "5666": NAGIOS, "icmp": NAGIOS,
        "5432": APPS | {"10.2.4.32"}, "8008": APPS | {"10.2.4.32"},
        # bbdd is also a consensus member: etcd from the other members only
        # (bbdd2, Patroni's other host, is one of them).
        "2379": {"10.2.4.32", "10.2.4.33"}, "2380": {"10.2.4.32", "10.2.4.33"}}
    assert admitted(rg.guard_nft(plan, "bbdd2"))["5432"] == APPS | {"10.2.4.31"}


def test_the_witness_admits_etcd_only_from_the_database_hosts_and_members(plan):
    assert admitted(rg.guard_nft(plan, "witness")) == {
        "22": GES, "22@10.2.4.33": ANYWHERE, "5666": NAGIOS, "icmp": NAGIOS,
        "2379": {"10.2.4.31", "10.2.4.32"}, "2380": {"10.2.4.31", "10.2.4.32"}}


def test_a_storage_node_admits_gluster_from_the_servers_and_the_other_nodes(plan):
    gluster = APPS | {"10.2.4.22", "10.2.4.23"}
    assert admitted(rg.guard_nft(plan, "nas1")) == {
        "22": GES, "22@10.2.4.21": ANYWHERE, "5666": NAGIOS, "icmp": NAGIOS,
        "24007": gluster, "24008": gluster, "49152-60999": gluster}


def test_no_rule_names_a_client_a_firewall_a_balancer_or_the_management_hosts_beyond_theirs(plan):
    outsiders = {str(a) for h in ("c1", "c2", "fw1", "fw2", "lb1", "lb2", "logs")
                 for a in plan.lab_addresses[h]}
    outsiders |= {str(a) for a in plan.lab_addresses["s1"]} - {"10.2.4.11"}
    apps = {str(a) for b in plan.backends for a in plan.lab_addresses[b.name]}
    for host in rg.guarded_hosts(plan):
        text = rg.guard_nft(plan, host)
        assert "policy drop;" in text and "flush ruleset" not in text
        for port, sources in admitted(text).items():
            assert not sources & outsiders, (host, port)
            # From anywhere only SSH, to the addresses where sshd stops listening
            # once the access role ran (the operators' first deployment).
            assert sources != ANYWHERE or port.startswith("22@"), (host, port)
        assert not any(rule.startswith("22@10.2.9.") for rule in admitted(text))
        # Replies come from the hosts it opens connections to: never an app server.
        for port, sources in replies(text).items():
            assert not sources & apps and sources != ANYWHERE, (host, port)


def test_replies_are_taken_from_what_the_other_guarded_hosts_admit_from_this_one(plan):
    assert replies(rg.guard_nft(plan, "bbdd2")) == {
        "5432": {"10.2.4.31"}, "8008": {"10.2.4.31"},
        "2379": {"10.2.4.31", "10.2.4.33"}, "2380": {"10.2.4.31", "10.2.4.33"},
        "2514": {"10.2.9.4"}}
    assert replies(rg.guard_nft(plan, "witness")) == {
        "2379": {"10.2.4.31", "10.2.4.32"}, "2380": {"10.2.4.31", "10.2.4.32"},
        "2514": {"10.2.9.4"}}
    assert replies(rg.guard_nft(plan, "nas1")) == {
        port: {"10.2.4.22", "10.2.4.23"} for port in ("24007", "24008", "49152-60999")} | {
        "2514": {"10.2.9.4"}}


def test_a_server_added_to_the_scenario_is_admitted(tmp_path):
    text = (SCENARIO_DIR / "complete.toml").read_text() + S4
    plan = build_plan(parse_scenario(text, source="complete-s4.toml"))
    assert "10.2.4.14" in admitted(rg.guard_nft(plan, "bbdd"))["8008"]
    assert "10.2.4.14" in admitted(rg.guard_nft(plan, "nas3"))["24007"]
    assert "10.2.4.14" not in admitted(rg.guard_nft(plan, "witness"))["2379"]
    assert "10.2.4.14" in storage.volume_clients(plan)


def test_without_a_management_host_ssh_stays_open_and_nothing_else_widens():
    plan = build_plan(load_scenario("pfinal"))
    rules, back = parsed(rg.guard_nft(plan, "bbdd"))
    # The operators come from wherever they are: the plan cannot name them.
    assert rules == {"22": ANYWHERE, "5432": APPS} and back == {}
    assert admitted(rg.guard_nft(plan, "nas2"))["24007"] == APPS | {"10.2.4.21", "10.2.4.23"}


def test_the_table_replaces_itself_and_touches_no_other(plan):
    text = rg.guard_nft(plan, "bbdd")
    head = [line for line in text.splitlines() if line and not line.startswith("#")][:3]
    assert head == ["table inet quizstack_guard", "delete table inet quizstack_guard",
                    "table inet quizstack_guard {"]
    unit = rg.guard_systemd_unit()
    assert f"ExecReload=/usr/sbin/nft -f {rg.CONF}" in unit
    assert "ExecStop=/usr/sbin/nft delete table inet quizstack_guard" in unit


@pytest.mark.skipif(not shutil.which("nft"), reason="nftables is not installed")
def test_nft_accepts_every_guard(plan, tmp_path):
    for host in rg.guarded_hosts(plan):
        path = tmp_path / f"{host}.nft"
        path.write_text(rg.guard_nft(plan, host))
        done = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
        if done.returncode != 0 and "Operation not permitted" in done.stderr:
            pytest.skip("nft -c needs root")
        assert done.returncode == 0, (host, done.stderr)


def test_patroni_takes_changes_only_with_the_login_and_from_a_database_host(plan):
    secrets = {"database_superuser_password": "su", "database_replication_password": "rep",
               "database_rewind_password": "rw", "patroni_api_password": "it's"}
    conf = render.patroni_yml(plan, "bbdd", secrets, "15")
    restapi = conf.split("restapi:\n", 1)[1].split("\n\n", 1)[0]
    assert "  authentication:\n    username: 'patroni'\n    password: 'it''s'\n" in restapi
    assert "  allowlist: ['10.2.4.31/32', '10.2.4.32/32']" in restapi
    del secrets["patroni_api_password"]
    assert "authentication" not in render.patroni_yml(plan, "bbdd", secrets, "15").split("etcd:")[0]


def test_the_guard_closes_the_back_end_once_up_before_the_servers_use_it(plan):
    phases = [p for role in ROLES for p in role.phases(plan, Context({}, "/venv"))]
    position = {p.key: i for i, stage in enumerate(schedule(phases)) for p in stage}
    assert position["database: postgresql"] < position[guard.KEY]
    assert position["storage: volume"] < position[guard.KEY]
    assert position[guard.KEY] <= position["web: database router"] < position["web: migrate"]
    assert position[guard.KEY] < position["access: sshd"]


def test_a_scale_runs_the_guard_first_on_all_its_hosts(plan):
    phases = [p for role in ROLES for p in role.phases(plan, Context({}, "/venv"))]
    kept = restrict(phases, {"s4", "lb1", "lb2", "ges", "nagios"}, whole=(guard.ROLE,))
    assert kept[0].key == guard.KEY and kept[0].hosts == rg.guarded_hosts(plan)
    assert kept[0].needs == ()
    assert all(guard.KEY in p.needs for p in kept[1:])
    assert not any(h in p.hosts for p in kept[1:] for h in rg.guarded_hosts(plan))


def test_without_whole_roles_a_restriction_is_as_before():
    def noop(plan, context):
        pass

    phases = [Phase("web", "configure", ("s1", "s4"), noop),
              Phase("guard", "nftables", ("bbdd",), noop, needs=("web: configure",))]
    assert [(p.key, p.hosts) for p in restrict(phases, {"s4"})] == [("web: configure", ("s4",))]


def test_the_volume_admits_the_app_servers_only(plan):
    # The storage nodes' own clients log in with the volume's internal credentials.
    assert storage.volume_clients(plan) == ("10.2.4.11", "10.2.4.12", "10.2.4.13")
    assert storage.option_value(["Option                                   Value",
                                 "------                                   -----",
                                 "auth.allow                               10.2.4.11,10.2.4.12"],
                                "auth.allow") == "10.2.4.11,10.2.4.12"
