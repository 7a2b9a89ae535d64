"""Names and network plans of a lab: pure functions of (lab name, topology).

Everything a lab creates is named after the lab here, in one place, so that
two labs never collide and destroy finds exactly its own things:

    qs-<lab>            network namespace holding one bridge per network
    br-<network>        a bridge, inside qs-<lab>
    <host>-<n>          bridge side of the veth of a host's n-th interface
    qs-<lab>-<host>     a host's network namespace (its interfaces: eth0, ...)

The `ip -batch` texts below are what the lab feeds to iproute2: one process
for the bridges and links, one per host for addresses and routes.
"""

from __future__ import annotations

import re

from quizstack.errors import LabError
from quizstack.topology import Host, Topology

# No '-' in lab names: qs-<lab>-<host> must never read as another lab's name.
LAB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
NETNS_DIR = "/run/netns"


def check_lab_name(name: str) -> str:
    if not isinstance(name, str) or not LAB_NAME.match(name):
        raise LabError(
            f"invalid lab name {name!r}: lowercase letters, digits and _, "
            "starting with a letter, at most 16 characters"
        )
    return name


def lab_netns(lab: str) -> str:
    return f"qs-{lab}"


def host_netns(lab: str, host: str) -> str:
    return f"qs-{lab}-{host}"


def netns_path(name: str) -> str:
    return f"{NETNS_DIR}/{name}"


def bridge_name(network: str) -> str:
    return f"br-{network}"


def veth_name(host: str, index: int) -> str:
    return f"{host}-{index}"


def all_netns(lab: str, topo: Topology) -> list[str]:
    """The lab's namespaces in creation order (bridges first)."""
    return [lab_netns(lab)] + [host_netns(lab, h) for h in topo.hosts]


def bridge_batch(lab: str, topo: Topology) -> str:
    """Commands for `ip -n qs-<lab> -batch -`: bridges and every veth pair.

    The host end of each pair is created directly in the host's namespace with
    its final name, so nothing of the lab ever appears in the root namespace.
    """
    lines = ["link set lo up"]
    for net in topo.networks:
        br = bridge_name(net)
        lines.append(f"link add {br} type bridge forward_delay 0 stp_state 0")
        lines.append(f"link set {br} addrgenmode none")
        lines.append(f"link set {br} up")
    return "\n".join(lines) + "\n" + links_batch(lab, topo.hosts.values())


def mac_address(address) -> str:
    """A host interface's MAC, made from its IPv4 address (locally administered).

    The same address always gets the same MAC: a server removed and added again
    (`scale`) is found at once by the neighbours that still remember it, instead
    of after their ARP caches notice the old MAC is gone (measured: 8-15 s)."""
    return "02:51:" + ":".join(f"{b:02x}" for b in address.packed)


def links_batch(lab: str, hosts) -> str:
    """Commands for `ip -n qs-<lab> -batch -`: the veth pairs of some hosts,
    their bridge ends on their networks' bridges (a host added to a running lab)."""
    lines = []
    for host in hosts:
        for index, iface in enumerate(host.interfaces):
            veth = veth_name(host.name, index)
            lines.append(
                f"link add {veth} type veth peer name {iface.name} "
                f"address {mac_address(iface.address)} netns {host_netns(lab, host.name)}"
            )
            lines.append(f"link set {veth} addrgenmode none")
            lines.append(f"link set {veth} master {bridge_name(iface.network)} up")
    return "".join(line + "\n" for line in lines)


def host_batch(host: Host) -> str:
    """Commands for `ip -n qs-<lab>-<host> -batch -`: links up, addresses, routes."""
    lines = ["link set lo up"]
    for iface in host.interfaces:
        # IPv4 only, like the scenario: no IPv6 link-local address, so no
        # IPv6 path between hosts that the scenario (and firewall) ignore.
        lines.append(f"link set {iface.name} addrgenmode none")
        lines.append(f"link set {iface.name} up")
        lines.append(f"address add {iface.cidr} dev {iface.name}")
    for route in host.routes:
        lines.append(f"route add {route.destination} via {route.via}")
    return "\n".join(lines) + "\n"


def forward_target(topo: Topology) -> tuple[str, str]:
    """Where the loopback forward enters and what it reaches.

    It enters as the first client and connects to the load balancer's
    address (a pair's floating one) on a network the firewall is on (so traffic crosses the firewall
    as a client's would); returns (client host name, lb address).
    """
    clients = topo.with_role("client")
    lbs = topo.with_role("loadbalancer")
    fws = topo.with_role("firewall")
    if not clients or not lbs:
        raise LabError(f"{topo.source}: a forward needs a client and a load balancer")
    lb = lbs[0]
    fw_nets = set(fws[0].networks) if fws else set()
    for iface in lb.interfaces:
        if iface.network in fw_nets:
            # A pair of balancers is reached at its floating address.
            return clients[0].name, str(topo.service_address(lb, iface.network))
    return clients[0].name, str(topo.service_address(lb, lb.interfaces[0].network))
