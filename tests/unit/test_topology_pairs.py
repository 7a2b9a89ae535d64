"""The complete scenario and floating (VRRP) groups: pairs that act as one host.

A pair keeps the addresses clients and servers already use, so the scenario
file says which hosts share which addresses; every mistake in that is one
clear line before anything is created.
"""

import pytest

from quizstack.errors import ScenarioError
from quizstack.lab import render as lab_render
from quizstack.lab.plan import forward_target
from quizstack.topology import load_scenario
from quizstack.topology.loader import SCENARIO_DIR

COMPLETE = (SCENARIO_DIR / "complete.toml").read_text()


@pytest.fixture(scope="module")
def topo():
    return load_scenario("complete")


def error_of(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


def replace(old, new, text=COMPLETE):
    assert old in text, old
    return text.replace(old, new, 1)


def test_complete_has_a_firewall_pair_and_a_load_balancer_pair(topo):
    assert [h.name for h in topo.with_role("firewall")] == ["fw1", "fw2"]
    assert [h.name for h in topo.with_role("loadbalancer")] == ["lb1", "lb2"]
    fw, lb = topo.floating["fw"], topo.floating["lb"]
    assert fw.hosts == ("fw1", "fw2") and lb.hosts == ("lb1", "lb2")
    assert [(a.network, str(a.address)) for a in fw.addresses] == [
        ("LAN1", "10.2.1.1"), ("LAN2", "10.2.2.1")]
    assert [(a.network, str(a.address)) for a in lb.addresses] == [
        ("LAN2", "10.2.2.2"), ("LAN3", "10.2.3.1")]
    assert (fw.vrid, lb.vrid) == (1, 2)


def test_clients_and_servers_keep_pfinals_gateways(topo):
    pfinal = load_scenario("pfinal")
    for name in ("c1", "c2", "s1", "s2", "s3"):
        assert topo.host(name).routes == pfinal.host(name).routes
        # The same interfaces, and the servers' management interface after them.
        service = [i for i in topo.host(name).interfaces if i.network != "MGMT"]
        assert service == pfinal.host(name).interfaces


def test_a_pairs_floating_address_is_where_others_reach_it(topo):
    assert str(topo.service_address(topo.host("lb2"), "LAN2")) == "10.2.2.2"
    assert str(topo.service_address(topo.host("s1"), "LAN3")) == "10.2.3.11"
    assert topo.floating_of("fw2").name == "fw" and topo.floating_of("c1") is None
    # The loopback forward enters as c1 and aims at the floating service address.
    assert forward_target(topo) == ("c1", "10.2.2.2")


def test_etc_hosts_names_the_floating_addresses_after_their_group(topo):
    hosts = lab_render.etc_hosts(topo, "complete")
    assert "10.2.2.2\tlb lb-lan2\n" in hosts
    assert "10.2.3.1\tlb-lan3\n" in hosts
    assert "10.2.1.1\tfw fw-lan1\n" in hosts


def test_two_load_balancers_without_a_floating_group(tmp_path):
    text = replace('[floating.lb]', '[floating.other]')
    text = text.replace('hosts = ["lb1", "lb2"]', 'hosts = ["s1", "s2"]')
    text = text.replace('link = "LBLINK"\n', '')
    text = text.replace('{ network = "LAN2", address = "10.2.2.2" },\n', '')
    assert "role loadbalancer: 2 hosts (lb1, lb2) must share one [floating] group" in \
        error_of(tmp_path, text)


@pytest.mark.parametrize("old, new, message", [
    ('hosts = ["lb1", "lb2"]', 'hosts = ["lb1", "lb9"]', "floating lb: unknown host 'lb9'"),
    ('hosts = ["lb1", "lb2"]', 'hosts = ["lb1"]', "floating lb: needs at least two hosts"),
    ('hosts = ["lb1", "lb2"]', 'hosts = ["lb1", "lb1"]', "floating lb: a host is listed twice"),
    ('hosts = ["lb1", "lb2"]', 'hosts = ["lb1", "s1"]', "floating lb: its hosts must have the same roles"),
    ('hosts = ["lb1", "lb2"]', 'hosts = ["fw1", "fw2"]', "floating lb: host fw1 already belongs to floating fw"),
    ('address = "10.2.2.2" }', 'address = "10.2.2.21" }', "floating lb: address 10.2.2.21 already used by lb1"),
    ('address = "10.2.2.2" }', 'address = "10.2.2.1" }', "floating lb: address 10.2.2.1 already used by fw"),
    ('address = "10.2.3.1" }', 'address = "10.2.4.1" }', "floating lb: address 10.2.4.1 is not in LAN3"),
    ('{ network = "LAN3", address = "10.2.3.1" }', '{ network = "LAN4", address = "10.2.4.1" }',
     "floating lb: host lb1 has no interface on LAN4"),
    ('{ network = "LAN3", address = "10.2.3.1" }', '{ network = "LAN9", address = "10.2.3.1" }',
     "floating lb: address 1: unknown network 'LAN9'"),
    ('[floating.lb]', '[floating.s1]', "floating s1: same name as host s1"),
    ('[floating.lb]\n', '[floating.lb]\nvrid = 1\n', "floating lb: vrid 1 already used on LAN2 by floating fw"),
    ('[floating.lb]\n', '[floating.lb]\nvrid = 300\n', "floating lb: vrid must be an integer from 1 to 255"),
    ('[floating.lb]\n', '[floating.lb]\nweight = 3\n', "floating lb: unknown key 'weight'"),
])
def test_floating_mistakes(tmp_path, old, new, message):
    assert message in error_of(tmp_path, replace(old, new))
