"""Topology: a scenario file as pure, validated data.

    from quizstack.topology import load_scenario
    topo = load_scenario("pfinal")        # bundled name, or a path to a .toml file

Nothing here touches the system; the lab (quizstack.lab) makes a topology
real, the deployment roles configure it, the checks verify it.
"""

from quizstack.topology.loader import (
    KNOWN_ROLES,
    ROLES,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
    scenario_path,
)
from quizstack.topology.model import (
    FloatingAddress, FloatingGroup, Host, Interface, Network, Route, Topology,
)

__all__ = [
    "KNOWN_ROLES", "ROLES", "FloatingAddress", "FloatingGroup", "Host", "Interface", "Network", "Route", "Topology",
    "bundled_scenarios", "load_scenario", "parse_scenario", "scenario_path",
]
