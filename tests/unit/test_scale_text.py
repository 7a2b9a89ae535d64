"""`quizstack scale web=N` as text: the scenario gains or loses app servers.

Pure: the new scenario's text, validated like any file; refusals are one
line; the deployment restricted to the hosts a scale touches.
"""

import pytest

from quizstack.deploy import restrict
from quizstack.deploy.roles import Phase
from quizstack.errors import ScenarioError
from quizstack.topology import load_scenario, parse_scenario
from quizstack.topology.loader import SCENARIO_DIR
from quizstack.topology.scale import scaled_text

TEXT = (SCENARIO_DIR / "complete.toml").read_text()
TOPO = load_scenario("complete")


def test_a_new_server_copies_the_last_one_with_the_next_free_addresses():
    text, added, removed = scaled_text(TEXT, TOPO, "web", 5)
    assert (added, removed) == (["s4", "s5"], [])
    new = parse_scenario(text)
    s5 = new.host("s5")
    assert s5.roles == ("web",) and s5.routes == TOPO.host("s3").routes
    assert [(i.name, i.network, str(i.address)) for i in s5.interfaces] == [
        ("eth0", "LAN3", "10.2.3.15"), ("eth1", "LAN4", "10.2.4.15"), ("eth2", "MGMT", "10.2.9.35")]
    # Written after s3, the rest of the file as it was.
    assert text.index("[hosts.s4]") < text.index("[hosts.nas1]")
    assert text.replace(text[text.index("# Added by"):text.index("[hosts.nas1]")], "") == TEXT


def test_scaling_back_gives_the_original_text():
    text, _, _ = scaled_text(TEXT, TOPO, "web", 5)
    back, added, removed = scaled_text(text, parse_scenario(text), "web", 3)
    assert (back, added, removed) == (TEXT, [], ["s4", "s5"])


def test_servers_leave_from_the_last_one():
    text, _, removed = scaled_text(TEXT, TOPO, "web", 1)
    assert removed == ["s2", "s3"]
    assert [h.name for h in parse_scenario(text).with_role("web")] == ["s1"]


def test_the_same_count_changes_nothing():
    assert scaled_text(TEXT, TOPO, "web", 3) == (TEXT, [], [])


@pytest.mark.parametrize("count", [0, -1])
def test_no_server_at_all_is_refused(count):
    with pytest.raises(ScenarioError, match=f"web={count}: the service needs at least one web host"):
        scaled_text(TEXT, TOPO, "web", count)


def test_more_servers_than_addresses_is_refused_in_one_line():
    with pytest.raises(ScenarioError) as info:
        scaled_text(TEXT, TOPO, "web", 300)
    assert "no free address left" in str(info.value) and "\n" not in str(info.value)


def test_a_scale_deploys_only_on_the_hosts_it_touches():
    def noop(plan, context):
        pass

    phases = [Phase("web", "configure", ("s1", "s4"), noop),
              Phase("web", "migrate", ("s1",), noop, needs=("web: configure",)),
              Phase("web", "gunicorn", ("s1", "s4"), noop, needs=("web: migrate",)),
              Phase("loadbalancer", "haproxy", ("lb1", "lb2"), noop, needs=("web: gunicorn",))]
    kept = restrict(phases, {"s4", "lb1", "lb2"})
    assert [(p.key, p.hosts, p.needs) for p in kept] == [
        ("web: configure", ("s4",), ()),
        ("web: gunicorn", ("s4",), ("web: configure",)),
        ("loadbalancer: haproxy", ("lb1", "lb2"), ("web: gunicorn",))]
