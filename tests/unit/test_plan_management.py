"""The management network: ges and nagios on it with every host behind the firewall.

The plan says where each host is reached for management, where the clients
reach ges and Nagios, and refuses scenarios where that cannot hold (a client
on the management network, a server left off it), in one line.
"""

import pytest

from quizstack.deploy.plan import build_plan
from quizstack.errors import ScenarioError
from quizstack.topology import load_scenario
from quizstack.topology.loader import SCENARIO_DIR

COMPLETE = (SCENARIO_DIR / "complete.toml").read_text()


def plan_of(tmp_path, text):
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return build_plan(load_scenario(str(path)))


def replace(old, new, text=COMPLETE):
    assert old in text, old
    return text.replace(old, new, 1)


def test_every_host_behind_the_firewall_is_on_the_management_network():
    plan = build_plan(load_scenario("complete"))
    m = plan.management
    assert (m.network, str(m.subnet)) == ("MGMT", "10.2.9.0/24")
    assert set(m.addresses) == set(load_scenario("complete").hosts) - {"c1", "c2"}
    assert str(m.address("fw2")) == "10.2.9.12" and str(m.address("ges")) == "10.2.9.2"
    assert "ges" not in m.managed and "fw1" in m.managed and "nagios" in m.managed
    # The clients reach ges and Nagios on the network they share with the firewall.
    assert (m.ges, str(m.ges_address)) == ("ges", "10.2.2.31")
    assert (m.nagios, str(m.nagios_address), m.nagios_port) == ("nagios", "10.2.2.41", 80)


def test_the_service_never_travels_on_the_management_network():
    plan = build_plan(load_scenario("complete"))
    assert [str(b.address) for b in plan.backends] == ["10.2.3.11", "10.2.3.12", "10.2.3.13"]
    assert [str(a) for _, a in plan.storage_hosts] == ["10.2.4.21", "10.2.4.22", "10.2.4.23"]
    for pair in plan.pairs:
        assert all("MGMT" not in own for own in pair.own.values())


def test_pfinal_has_no_management_network():
    assert build_plan(load_scenario("pfinal")).management is None


def test_a_client_on_the_management_network_is_refused(tmp_path):
    text = replace('interfaces = [{ network = "LAN1", address = "10.2.1.12" }]',
                   'interfaces = [{ network = "LAN1", address = "10.2.1.12" }, '
                   '{ network = "MGMT", address = "10.2.9.99" }]')
    with pytest.raises(ScenarioError, match="client c2 is on the management network MGMT"):
        plan_of(tmp_path, text)


def test_a_host_off_the_management_network_is_refused(tmp_path):
    text = replace('    { network = "MGMT", address = "10.2.9.33" },\n', "")
    with pytest.raises(ScenarioError, match="host s3 has no interface on the management network"):
        plan_of(tmp_path, text)


def test_an_unknown_management_network_is_refused(tmp_path):
    text = replace('[management]\nnetwork = "MGMT"', '[management]\nnetwork = "ADMIN"')
    with pytest.raises(ScenarioError, match="network 'ADMIN' is not one of"):
        plan_of(tmp_path, text)


def test_two_management_hosts_are_refused(tmp_path):
    text = replace('roles = ["monitoring"]', 'roles = ["monitoring", "management"]')
    with pytest.raises(ScenarioError, match="role management: at most one host, found 2"):
        plan_of(tmp_path, text)
