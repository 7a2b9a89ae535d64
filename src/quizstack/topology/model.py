"""The topology model: networks, hosts, interfaces and routes as plain data.

A Topology is what a scenario file says, validated and typed, and nothing
more: building one runs no command and touches no file besides reading the
scenario. The lab, the deployment roles and the checks all read it; none of
them writes it. Objects are frozen so that no layer can quietly change what
another one relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from quizstack.errors import ScenarioError


@dataclass(frozen=True)
class Network:
    name: str
    subnet: IPv4Network
    description: str = ""


@dataclass(frozen=True)
class Interface:
    name: str                 # inside the host: eth0, eth1, ...
    network: str              # a Network's name
    address: IPv4Address
    prefixlen: int

    @property
    def cidr(self) -> str:
        """The address with its prefix, as `ip addr add` wants it."""
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class Route:
    destination: IPv4Network
    via: IPv4Address


@dataclass(frozen=True)
class Host:
    name: str
    roles: tuple[str, ...]
    forward: bool = False
    interfaces: list[Interface] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    description: str = ""
    kind: str = "namespace"   # "namespace": shares the machine's /usr; "system": a whole Debian
    release: str = ""         # a full-system host's Debian codename; "" = the machine's own

    @property
    def system(self) -> bool:
        """True for a full-system host (its own Debian, systemd as init)."""
        return self.kind == "system"

    def address_on(self, network: str) -> IPv4Address:
        """This host's address on a network; ScenarioError if it has none there."""
        for iface in self.interfaces:
            if iface.network == network:
                return iface.address
        raise ScenarioError(f"host {self.name}: no interface on network {network}")

    @property
    def address(self) -> IPv4Address:
        """The first address: the one /etc/hosts gives for the bare host name."""
        return self.interfaces[0].address

    @property
    def networks(self) -> list[str]:
        return [iface.network for iface in self.interfaces]

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class FloatingAddress:
    network: str
    address: IPv4Address
    prefixlen: int

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class FloatingGroup:
    """Addresses that float between hosts of one role (VRRP): a pair is one host to others.

    The addresses move together, to one member at a time: the first host
    listed is preferred; `vrid` is the VRRP router id, unique per network.
    `link` names a network of the members' own (only they are on it) where
    their VRRP adverts and state sync travel, out of reach of every other
    host; "" when they talk on a network they share with others.
    """

    name: str
    hosts: tuple[str, ...]
    addresses: tuple[FloatingAddress, ...]
    vrid: int
    description: str = ""
    link: str = ""

    def address_on(self, network: str) -> IPv4Address | None:
        for floating in self.addresses:
            if floating.network == network:
                return floating.address
        return None


@dataclass(frozen=True)
class Topology:
    name: str
    source: str
    networks: dict[str, Network]
    hosts: dict[str, Host]
    settings: dict = field(default_factory=dict)
    description: str = ""
    floating: dict[str, FloatingGroup] = field(default_factory=dict)

    def with_role(self, role: str) -> list[Host]:
        """The hosts that have a role, in the order of the scenario file."""
        return [host for host in self.hosts.values() if role in host.roles]

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise ScenarioError(
                f"{self.source}: no host {name!r} (hosts: {', '.join(self.hosts)})"
            ) from None

    def floating_of(self, host: str) -> FloatingGroup | None:
        """The floating group a host belongs to, if any."""
        for group in self.floating.values():
            if host in group.hosts:
                return group
        return None

    def service_address(self, host: Host, network: str) -> IPv4Address:
        """Where others reach a host on a network: its group's floating address
        there if it has one, else its own."""
        group = self.floating_of(host.name)
        floating = group.address_on(network) if group else None
        return floating or host.address_on(network)

    def hosts_on(self, network: str) -> list[Host]:
        """The hosts with an interface on a network, in file order."""
        return [h for h in self.hosts.values() if network in h.networks]
