"""The deployment plan and files of the complete scenario's pairs (fw1/fw2, lb1/lb2)."""

import shutil
import subprocess
from ipaddress import IPv4Address

import pytest

from quizstack.deploy import ROLES, render, schedule
from quizstack.deploy.plan import build_plan
from quizstack.deploy.roles import Context
from quizstack.topology import load_scenario


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_scenario("complete"))


def test_the_pairs_stand_where_single_hosts_stood(plan):
    assert plan.lb_hosts == ("lb1", "lb2") and plan.fw_hosts == ("fw1", "fw2")
    assert plan.lb_address == IPv4Address("10.2.2.2")
    assert plan.lb_backend_addresses == (IPv4Address("10.2.3.2"), IPv4Address("10.2.3.3"))
    fw, lb = plan.pairs
    assert (fw.name, fw.role, fw.hosts, fw.sync_network) == ("fw", "firewall", ("fw1", "fw2"), "FWLINK")
    assert lb.addresses == (("LAN2", "10.2.2.2/24"), ("LAN3", "10.2.3.1/24"))
    assert plan.pair_of("lb2") is lb and plan.pair_of("s1") is None
    # The scans cover the floating addresses too.
    assert plan.lab_addresses["fw"] == (IPv4Address("10.2.1.1"), IPv4Address("10.2.2.1"))


def test_pfinal_has_no_pairs():
    plan = build_plan(load_scenario("pfinal"))
    assert plan.pairs == () and plan.lb_hosts == ("lb",) and plan.fw_hosts == ("fw",)
    assert "ip protocol vrrp" not in render.nftables_conf(plan)


def test_app_servers_trust_the_forwarded_headers_of_both_balancers(plan):
    conf = render.gunicorn_conf(plan, plan.backends[0])
    assert "forwarded_allow_ips = '10.2.3.2,10.2.3.3'" in conf


def test_keepalived_floats_the_addresses_together_without_preempting(plan):
    fw, lb = plan.pairs
    first = render.keepalived_conf(lb, "lb1", "/usr/bin/true")
    second = render.keepalived_conf(lb, "lb2", "/usr/bin/true")
    for conf in (first, second):
        assert "vrrp_version 3" in conf and "state BACKUP" in conf and "nopreempt" in conf
        assert "virtual_router_id 2" in conf and "advert_int 0.2" in conf
        assert "10.2.2.2/24 dev eth0" in conf and "10.2.3.1/24 dev eth1" in conf
        assert 'script "/usr/bin/true"' in conf
    assert "priority 150" in first and "priority 100" in second
    # The firewalls' adverts stay on their own link (eth3), off LAN1 and LAN2.
    conf = render.keepalived_conf(fw, "fw2", "/usr/bin/true", notify="/n.sh")
    assert "interface eth3" in conf and "notify /n.sh" in conf
    assert "10.2.1.1/24 dev eth0" in conf and "10.2.2.1/24 dev eth1" in conf


def test_conntrackd_syncs_each_firewall_with_the_other(plan):
    fw = plan.pairs[0]
    one, two = render.conntrackd_conf(fw, "fw1"), render.conntrackd_conf(fw, "fw2")
    assert "IPv4_address 10.2.5.1\n" in one and "IPv4_Destination_Address 10.2.5.2" in one
    assert "IPv4_address 10.2.5.2\n" in two and "IPv4_Destination_Address 10.2.5.1" in two
    assert "Mode FTFW" in one and "Interface eth3" in one
    # Their own traffic is not worth sharing; the clients' to the service is.
    assert "IPv4_address 10.2.1.1\n" in one and "IPv4_address 10.2.2.11\n" in one
    assert "10.2.2.2\n" not in one


def test_the_notify_script_records_the_state_and_moves_connections(plan):
    fw, lb = plan.pairs
    script = render.vrrp_notify(fw, conntrackd=True)
    assert "/run/keepalived-fw.state" in script and '-c\n' in script and "-n\n" in script
    assert "conntrackd" not in render.vrrp_notify(lb)
    for text in (script, render.vrrp_notify(lb)):
        assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0


def test_the_firewall_pair_accepts_adverts_and_sync_from_its_members_only(plan):
    rules = render.nftables_conf(plan)
    peer = 'iifname { "eth3" } ip saddr { 10.2.5.1, 10.2.5.2 } fib saddr type != local'
    assert f"{peer} ip protocol vrrp accept" in rules
    assert f"{peer} udp dport 3780 accept" in rules
    assert 'iifname { "eth0" } ip daddr 10.2.2.2 tcp dport 80' in rules


@pytest.mark.skipif(not shutil.which("nft"), reason="nftables is not installed")
def test_nft_accepts_the_pairs_ruleset(plan, tmp_path):
    path = tmp_path / "nftables.conf"
    path.write_text(render.nftables_conf(plan))
    done = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    if "Operation not permitted" in done.stderr:
        pytest.skip("nft -c needs root")
    assert done.returncode == 0, done.stderr


def test_keepalived_comes_after_the_service_it_guards(plan):
    phases = [p for role in ROLES for p in role.phases(plan, Context({}, "/venv"))]
    stages = [[p.key for p in stage] for stage in schedule(phases)]
    position = {key: i for i, stage in enumerate(stages) for key in stage}
    assert position["loadbalancer: haproxy"] < position["loadbalancer: keepalived"]
    assert position["firewall: nftables"] < position["firewall: keepalived"]
    # The firewall opens last of the service (the monitoring, the logs and the way in may follow).
    service = [k for k in position if not k.startswith(("monitoring", "access", "logs"))]
    assert max(service, key=position.get) == "firewall: keepalived"
    hosts = {p.key: p.hosts for role in ROLES for p in role.phases(plan, Context({}, "/venv"))}
    assert hosts["loadbalancer: haproxy"] == ("lb1", "lb2")
    assert hosts["firewall: nftables"] == ("fw1", "fw2")


def test_the_random_drill_kills_every_host_but_the_clients_unless_spared(plan):
    from quizstack.chaos.experiments import ExperimentError, random_candidates, random_schedule

    candidates, spared = random_candidates(plan)
    assert "c1" not in candidates and "bbdd" in candidates and spared == {}
    candidates, spared = random_candidates(plan, ("bbdd", "bbdd2"))
    assert "bbdd" not in candidates and spared == {"bbdd": "spared on request",
                                                   "bbdd2": "spared on request"}
    with pytest.raises(ExperimentError):
        random_candidates(plan, ("c1",))
    schedule = random_schedule(plan, 2, seed=7, spare=("bbdd",))
    assert schedule == random_schedule(plan, 2, seed=7, spare=("bbdd",))   # reproducible
    assert all(host != "bbdd" for _, host, _ in schedule)
    assert all(a != b for (_, a, _), (_, b, _) in zip(schedule, schedule[1:]))
    # pfinal: a host alone in its role is spared, and says why.
    single = build_plan(load_scenario("pfinal"))
    assert random_candidates(single)[1] == {"bbdd": "the only database",
                                            "lb": "the only load balancer", "fw": "the only firewall"}
