"""Scenario files: pfinal's content, and one clear error per kind of mistake.

Every error must name the file and the offending item, in one line, before
anything is created: these tests read like the mistakes a user would make.
"""

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from quizstack.errors import ScenarioError
from quizstack.topology import load_scenario, parse_scenario
from quizstack.topology.loader import SCENARIO_DIR

PFINAL = (SCENARIO_DIR / "pfinal.toml").read_text()


# -- pfinal ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def topo():
    return load_scenario("pfinal")


def test_pfinal_is_found_by_name(topo):
    assert topo.name == "pfinal"
    assert Path(topo.source).name == "pfinal.toml"


def test_pfinal_networks(topo):
    assert {n: str(net.subnet) for n, net in topo.networks.items()} == {
        "LAN1": "10.2.1.0/24", "LAN2": "10.2.2.0/24",
        "LAN3": "10.2.3.0/24", "LAN4": "10.2.4.0/24",
    }


def test_pfinal_hosts_in_file_order_with_roles(topo):
    assert [(h.name, h.roles) for h in topo.hosts.values()] == [
        ("c1", ("client",)), ("c2", ("client",)), ("fw", ("firewall",)),
        ("lb", ("loadbalancer",)), ("s1", ("web",)), ("s2", ("web",)), ("s3", ("web",)),
        ("nas1", ("storage",)), ("nas2", ("storage",)), ("nas3", ("storage",)),
        ("bbdd", ("database",)),
    ]


def test_pfinal_addresses(topo):
    addresses = {h.name: [(i.name, i.network, str(i.address), i.prefixlen) for i in h.interfaces]
                 for h in topo.hosts.values()}
    assert addresses["fw"] == [("eth0", "LAN1", "10.2.1.1", 24), ("eth1", "LAN2", "10.2.2.1", 24)]
    assert addresses["lb"] == [("eth0", "LAN2", "10.2.2.2", 24), ("eth1", "LAN3", "10.2.3.1", 24)]
    assert addresses["s2"] == [("eth0", "LAN3", "10.2.3.12", 24), ("eth1", "LAN4", "10.2.4.12", 24)]
    assert addresses["c2"] == [("eth0", "LAN1", "10.2.1.12", 24)]
    assert addresses["nas3"] == [("eth0", "LAN4", "10.2.4.23", 24)]
    assert addresses["bbdd"] == [("eth0", "LAN4", "10.2.4.31", 24)]


def test_pfinal_routes(topo):
    routes = {h.name: [(str(r.destination), str(r.via)) for r in h.routes]
              for h in topo.hosts.values()}
    assert routes["c1"] == routes["c2"] == [("10.2.0.0/16", "10.2.1.1")]
    assert routes["fw"] == [("10.2.3.0/24", "10.2.2.2"), ("10.2.4.0/24", "10.2.2.2")]
    assert routes["lb"] == [("10.2.1.0/24", "10.2.2.1")]
    assert routes["s1"] == routes["s2"] == routes["s3"] == [("10.2.0.0/16", "10.2.3.1")]
    # Storage and database: no route at all, so they cannot reach the clients.
    assert routes["nas1"] == routes["bbdd"] == []


def test_pfinal_forwarding_only_on_fw_and_lb(topo):
    assert [h.name for h in topo.hosts.values() if h.forward] == ["fw", "lb"]


def test_pfinal_settings(topo):
    assert topo.settings == {"storage": {"volume": "nas", "replica": 3}, "service": {"port": 80, "demo": True}}


def test_with_role_and_address_on(topo):
    assert [h.name for h in topo.with_role("web")] == ["s1", "s2", "s3"]
    assert [h.name for h in topo.with_role("storage")] == ["nas1", "nas2", "nas3"]
    assert topo.with_role("monitoring") == []
    assert topo.hosts["s1"].address_on("LAN4") == IPv4Address("10.2.4.11")
    assert topo.hosts["lb"].address_on("LAN2") == IPv4Address("10.2.2.2")
    assert topo.networks["LAN4"].subnet == IPv4Network("10.2.4.0/24")


def test_address_on_a_network_the_host_is_not_on(topo):
    with pytest.raises(ScenarioError, match="host c1: no interface on network LAN4"):
        topo.hosts["c1"].address_on("LAN4")


def test_topology_is_frozen(topo):
    with pytest.raises(AttributeError):
        topo.hosts["c1"].forward = True


# -- errors ----------------------------------------------------------------------


def error_of(tmp_path, text, name="bad.toml"):
    """Load `text` as a scenario file; return the one-line error it gives."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path) + ": "), message
    return message


def replace(old, new, text=PFINAL):
    assert old in text, old
    return text.replace(old, new, 1)


S4 = """
[hosts.s4]
roles = ["web"]
interfaces = [{ network = "LAN3", address = "ADDR" }]
"""


def with_s4(address="10.2.3.14", extra=""):
    return replace("# The storage nodes", S4.replace("ADDR", address) + extra + "\n# The storage nodes")


def test_valid_extra_host_loads(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text(with_s4())
    assert [h.name for h in load_scenario(str(path)).with_role("web")] == ["s1", "s2", "s3", "s4"]


def test_toml_syntax(tmp_path):
    message = error_of(tmp_path, replace('subnet = "10.2.1.0/24"', 'subnet = 10.2.1.0/24'))
    assert "not valid TOML" in message and "line" in message


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="nowhere.toml: no such scenario file"):
        load_scenario(str(tmp_path / "nowhere.toml"))


def test_unknown_bundled_scenario_lists_the_known_ones():
    with pytest.raises(ScenarioError, match=r"no such scenario file \(bundled scenarios: .*pfinal"):
        load_scenario("pfinall")


def test_duplicate_address(tmp_path):
    message = error_of(tmp_path, with_s4("10.2.3.13"))
    assert message.endswith("host s4: address 10.2.3.13 already used by s3")


def test_address_outside_its_network(tmp_path):
    message = error_of(tmp_path, with_s4("10.2.4.14"))
    assert message.endswith("host s4: address 10.2.4.14 is not in LAN3 (10.2.3.0/24)")


def test_broadcast_address(tmp_path):
    message = error_of(tmp_path, with_s4("10.2.3.255"))
    assert "host s4: address 10.2.3.255 is the network or broadcast address of LAN3" in message


def test_bad_address(tmp_path):
    message = error_of(tmp_path, with_s4("10.2.3.300"))
    assert "host s4: interface eth0: bad IPv4 address '10.2.3.300'" in message


def test_unknown_network(tmp_path):
    text = replace('{ network = "LAN1", address = "10.2.1.11" }', '{ network = "LAN9", address = "10.2.1.11" }')
    message = error_of(tmp_path, text)
    assert "host c1: interface eth0: unknown network 'LAN9'" in message


def test_bad_cidr(tmp_path):
    message = error_of(tmp_path, replace('"10.2.2.0/24"', '"10.2.2.0/33"'))
    assert "network LAN2: bad CIDR '10.2.2.0/33'" in message


def test_cidr_with_host_bits(tmp_path):
    message = error_of(tmp_path, replace('"10.2.2.0/24"', '"10.2.2.1/24"'))
    assert "network LAN2: bad CIDR '10.2.2.1/24'" in message


def test_overlapping_networks(tmp_path):
    message = error_of(tmp_path, replace('"10.2.2.0/24"', '"10.2.0.0/16"'))
    assert "network LAN2: subnet 10.2.0.0/16 overlaps network LAN1" in message


def test_duplicate_host(tmp_path):
    text = replace("# The storage nodes", '[hosts.c1]\nroles = ["client"]\n\n# The storage nodes')
    message = error_of(tmp_path, text)
    assert "host c1: defined twice" in message


def test_duplicate_network(tmp_path):
    text = replace("[hosts.c1]", '[networks.LAN1]\nsubnet = "10.9.0.0/24"\n\n[hosts.c1]')
    message = error_of(tmp_path, text)
    assert "network LAN1: defined twice" in message


def test_network_names_differing_only_in_case(tmp_path):
    text = replace("[hosts.c1]", '[networks.lan1]\nsubnet = "10.9.0.0/24"\n\n[hosts.c1]')
    assert "network lan1: same name as network LAN1" in error_of(tmp_path, text)


@pytest.mark.parametrize("name", ["S4", "s_4", "-s4", "averyveryverylongname"])
def test_invalid_host_names(tmp_path, name):
    text = with_s4().replace("[hosts.s4]", f'[hosts."{name}"]')
    assert f"host {name}: invalid host name" in error_of(tmp_path, text)


def test_unknown_role(tmp_path):
    text = replace('roles = ["client"]', 'roles = ["clint"]')
    assert "host c1: unknown role 'clint'" in error_of(tmp_path, text)


def test_reserved_roles_are_accepted(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text(with_s4().replace('roles = ["web"]\ninterfaces = [{ network = "LAN3", address = "10.2.3.14" }]',
                                      'roles = ["monitoring", "logs"]\ninterfaces = [{ network = "LAN3", address = "10.2.3.14" }]'))
    assert [h.name for h in load_scenario(str(path)).with_role("monitoring")] == ["s4"]


def test_unknown_host_key(tmp_path):
    text = replace('[hosts.c1]\nroles = ["client"]', '[hosts.c1]\nroles = ["client"]\nforwards = true')
    assert "host c1: unknown key 'forwards'" in error_of(tmp_path, text)


def test_unknown_interface_key(tmp_path):
    text = replace('{ network = "LAN1", address = "10.2.1.11" }',
                   '{ network = "LAN1", address = "10.2.1.11", mask = 24 }')
    assert "host c1: interface 0: unknown key 'mask'" in error_of(tmp_path, text)


def test_unknown_network_key(tmp_path):
    text = replace('subnet = "10.2.1.0/24"', 'subnet = "10.2.1.0/24"\nvlan = 3')
    assert "network LAN1: unknown key 'vlan'" in error_of(tmp_path, text)


def test_unknown_top_level_key(tmp_path):
    assert "verison: unknown key" in error_of(tmp_path, "verison = 2\n" + PFINAL)


def test_unknown_route_key(tmp_path):
    text = replace('routes = [{ to = "10.2.1.0/24", via = "10.2.2.1" }]',
                   'routes = [{ to = "10.2.1.0/24", via = "10.2.2.1", metric = 5 }]')
    assert "host lb: route 0: unknown key 'metric'" in error_of(tmp_path, text)


def test_route_gateway_not_directly_reachable(tmp_path):
    text = replace('routes = [{ to = "10.2.1.0/24", via = "10.2.2.1" }]',
                   'routes = [{ to = "10.2.1.0/24", via = "10.2.4.1" }]')
    message = error_of(tmp_path, text)
    assert "host lb: route to 10.2.1.0/24: gateway 10.2.4.1 is not on any network of the host" in message


def test_route_via_own_address(tmp_path):
    text = replace('routes = [{ to = "10.2.1.0/24", via = "10.2.2.1" }]',
                   'routes = [{ to = "10.2.1.0/24", via = "10.2.2.2" }]')
    assert "host lb: route to 10.2.1.0/24: gateway 10.2.2.2 is the host's own address" in error_of(tmp_path, text)


def test_route_bad_destination(tmp_path):
    text = replace('routes = [{ to = "10.2.1.0/24", via = "10.2.2.1" }]',
                   'routes = [{ to = "10.2.1.0/40", via = "10.2.2.1" }]')
    assert "host lb: route 0: bad CIDR '10.2.1.0/40'" in error_of(tmp_path, text)


def test_second_interface_on_the_same_network(tmp_path):
    text = replace('interfaces = [{ network = "LAN1", address = "10.2.1.11" }]',
                   'interfaces = [{ network = "LAN1", address = "10.2.1.11" }, { network = "LAN1", address = "10.2.1.21" }]')
    assert "host c1: interface eth1: a second interface on LAN1" in error_of(tmp_path, text)


def test_host_without_interfaces(tmp_path):
    text = replace('[hosts.bbdd]\nroles = ["database"]\ninterfaces = [{ network = "LAN4", address = "10.2.4.31" }]',
                   '[hosts.bbdd]\nroles = ["database"]')
    assert "host bbdd: needs a list of interfaces" in error_of(tmp_path, text)


def test_forward_must_be_boolean(tmp_path):
    text = replace("forward = true", 'forward = "yes"')
    assert "host fw: forward must be true or false" in error_of(tmp_path, text)


def test_two_storage_nodes_for_replica_3(tmp_path):
    text = replace('[hosts.nas3]\nroles = ["storage"]', '[hosts.nas3]\nroles = []')
    message = error_of(tmp_path, text)
    assert message.endswith("role storage: 2 storage hosts (nas1, nas2) for [storage] replica = 3")


def test_replica_missing(tmp_path):
    text = replace("volume = \"nas\"\nreplica = 3", "volume = \"nas\"")
    assert "[storage]: missing replica" in error_of(tmp_path, text)


def test_two_firewalls(tmp_path):
    text = replace('[hosts.c2]\nroles = ["client"]', '[hosts.c2]\nroles = ["client", "firewall"]')
    assert ("role firewall: 2 hosts (c2, fw) must share one [floating] group to act as one"
            in error_of(tmp_path, text))


def test_no_loadbalancer(tmp_path):
    text = replace('roles = ["loadbalancer"]', 'roles = []')
    assert "role loadbalancer: exactly one host needed, found 0 (none)" in error_of(tmp_path, text)


def test_no_database(tmp_path):
    text = replace('roles = ["database"]', 'roles = []')
    assert "role database: at least one host needed, found none" in error_of(tmp_path, text)


def test_no_web_server(tmp_path):
    text = PFINAL.replace('roles = ["web"]', 'roles = []')
    assert "role web: at least one host needed, found none" in error_of(tmp_path, text)


def test_no_client(tmp_path):
    text = PFINAL.replace('roles = ["client"]', 'roles = []')
    assert "role client: at least one host needed, found none" in error_of(tmp_path, text)


def test_parse_scenario_names_its_source():
    with pytest.raises(ScenarioError, match=r"^inline\.toml: \[hosts\]: no host defined"):
        parse_scenario('[networks.A]\nsubnet = "10.0.0.0/24"\n', source="inline.toml")
