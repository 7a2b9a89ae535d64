"""Loading and validating scenario files (TOML) into a Topology.

Validation is pure and complete before anything else happens: a scenario
that cannot be built fails here, with one message naming the file and the
offending item (`pfinal.toml: host s4: address 10.2.3.13 already used by s3`),
so that no later layer ever creates half a lab from a wrong file.
"""

from __future__ import annotations

import re
import tomllib
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from quizstack import debian
from quizstack.errors import ScenarioError
from quizstack.topology.model import (
    FloatingAddress, FloatingGroup, Host, Interface, Network, Route, Topology,
)

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

ROLES = ("client", "firewall", "loadbalancer", "web", "storage", "database", "consensus",
         "management", "monitoring", "logs")
RESERVED_ROLES = ()
KNOWN_ROLES = ROLES + RESERVED_ROLES

# Exactly one of these per scenario: the architecture has one entry point and
# one balancer. Each may be a pair (or more) sharing floating addresses: one
# host to everybody else.
SINGLE_ROLES = ("firewall", "loadbalancer")
GROUPABLE_ROLES = ("firewall", "loadbalancer")
OPTIONAL_SINGLE_ROLES = ("management", "monitoring", "logs")
REQUIRED_ROLES = ("web", "client", "database")

# Host names become UTS names, netns names (qs-<lab>-<host>) and the
# bridge-side veth names (<host>-<n>, at most 15 characters in Linux).
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_HOST_NAME = 12
# Network names become bridge names (br-<network>, at most 15 characters).
NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
MAX_NETWORK_NAME = 12
MAX_INTERFACES = 99

TOP_KEYS = {"scenario", "networks", "hosts", "floating"}
SCENARIO_KEYS = {"name", "description", "hosts", "release"}
NETWORK_KEYS = {"subnet", "description"}
HOST_KEYS = {"roles", "forward", "interfaces", "routes", "description", "kind", "release"}
HOST_KINDS = ("namespace", "system")
INTERFACE_KEYS = {"network", "address", "name"}
ROUTE_KEYS = {"to", "via"}
FLOATING_KEYS = {"hosts", "addresses", "vrid", "description", "link"}
FLOATING_ADDRESS_KEYS = {"network", "address"}


def scenario_path(name_or_path) -> Path:
    """A bundled scenario's file for a bare name, else the path as given."""
    text = str(name_or_path)
    if "/" not in text and not text.endswith(".toml"):
        return SCENARIO_DIR / f"{text}.toml"
    return Path(text)


def bundled_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path) -> Topology:
    """Read and validate a scenario: a bundled name ("pfinal") or a .toml path."""
    path = scenario_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = ", ".join(bundled_scenarios())
        raise ScenarioError(
            f"{path}: no such scenario file (bundled scenarios: {known})"
        ) from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_scenario(text, source=str(path), default_name=path.stem)


_TWICE = re.compile(r"Cannot (?:declare|overwrite a value|overwrite) \(([^)]*)\)")


def _toml_error(source: str, exc: tomllib.TOMLDecodeError) -> ScenarioError:
    message = str(exc)
    match = _TWICE.search(message)
    if match:
        parts = [p.strip().strip("'\"") for p in match.group(1).split(",") if p.strip()]
        line = re.search(r"line (\d+)", message)
        where = f" (line {line.group(1)})" if line else ""
        if len(parts) == 2 and parts[0] in ("hosts", "networks"):
            kind = "host" if parts[0] == "hosts" else "network"
            return ScenarioError(f"{source}: {kind} {parts[1]}: defined twice{where}")
        return ScenarioError(f"{source}: {'.'.join(parts)}: defined twice{where}")
    return ScenarioError(f"{source}: not valid TOML: {message}")


def parse_scenario(text: str, source: str = "<scenario>", default_name: str = "scenario") -> Topology:
    """Validate a scenario's TOML text; `source` names it in every error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(source, exc) from None
    return _Builder(source, default_name).build(data)


class _Builder:
    """One validation pass; each method raises at the first problem it finds."""

    def __init__(self, source: str, default_name: str):
        self.source = source
        self.default_name = default_name

    def fail(self, what: str, problem: str):
        raise ScenarioError(f"{self.source}: {what}: {problem}")

    def table(self, value, what):
        if not isinstance(value, dict):
            self.fail(what, "must be a table")
        return value

    def keys(self, table: dict, allowed: set, what: str):
        unknown = sorted(set(table) - allowed)
        if unknown:
            self.fail(what, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")

    def string(self, value, what):
        if not isinstance(value, str):
            self.fail(what, f"must be a string, not {value!r}")
        return value

    def subnet(self, value, what) -> IPv4Network:
        text = self.string(value, what)
        try:
            return IPv4Network(text, strict=True)
        except ValueError as exc:
            self.fail(what, f"bad CIDR {text!r} ({exc})")

    def address(self, value, what) -> IPv4Address:
        text = self.string(value, what)
        try:
            return IPv4Address(text)
        except ValueError:
            self.fail(what, f"bad IPv4 address {text!r}")

    # -- the file -------------------------------------------------------------

    def build(self, data: dict) -> Topology:
        settings = {}
        for key, value in data.items():
            if key in TOP_KEYS:
                continue
            if not isinstance(value, dict):
                self.fail(key, f"unknown key (known: {', '.join(sorted(TOP_KEYS))}, or a settings table)")
            settings[key] = value

        meta = self.table(data.get("scenario", {}), "[scenario]")
        self.keys(meta, SCENARIO_KEYS, "[scenario]")
        name = self.string(meta.get("name", self.default_name), "[scenario] name")
        description = self.string(meta.get("description", ""), "[scenario] description")
        default_kind = self.kind(meta.get("hosts", "namespace"), "[scenario] hosts")
        default_release = self.release(meta.get("release", ""), "[scenario] release")

        networks = self.networks(self.table(data.get("networks", {}), "[networks]"))
        hosts = self.hosts(self.table(data.get("hosts", {}), "[hosts]"), networks, default_kind,
                           default_release)
        floating = self.floating(self.table(data.get("floating", {}), "[floating]"),
                                 networks, hosts)
        topo = Topology(name=name, source=self.source, networks=networks, hosts=hosts,
                        settings=settings, description=description, floating=floating)
        self.counts(topo)
        return topo

    def networks(self, table: dict) -> dict[str, Network]:
        if not table:
            self.fail("[networks]", "no network defined")
        networks: dict[str, Network] = {}
        seen_lower: dict[str, str] = {}
        for name, spec in table.items():
            what = f"network {name}"
            if not NETWORK_NAME.match(name) or len(name) > MAX_NETWORK_NAME:
                self.fail(what, f"invalid name (letters, digits and _, at most {MAX_NETWORK_NAME} characters)")
            if name.lower() in seen_lower:
                self.fail(what, f"same name as network {seen_lower[name.lower()]}")
            seen_lower[name.lower()] = name
            spec = self.table(spec, what)
            self.keys(spec, NETWORK_KEYS, what)
            if "subnet" not in spec:
                self.fail(what, "missing subnet")
            subnet = self.subnet(spec["subnet"], what)
            for other in networks.values():
                if subnet.overlaps(other.subnet):
                    self.fail(what, f"subnet {subnet} overlaps network {other.name} ({other.subnet})")
            networks[name] = Network(name=name, subnet=subnet,
                                     description=self.string(spec.get("description", ""), what))
        return networks

    def kind(self, value, what) -> str:
        if value not in HOST_KINDS:
            self.fail(what, f"unknown kind of host {value!r} (known: {', '.join(HOST_KINDS)})")
        return value

    def release(self, value, what) -> str:
        """A Debian codename of the supported ones, or "" (the machine's own, at boot)."""
        if value == "":
            return ""
        if value not in debian.RELEASES:
            self.fail(what, f"unknown Debian release {value!r} "
                            f"(supported: {', '.join(debian.RELEASES)})")
        return value

    def hosts(self, table: dict, networks: dict[str, Network],
              default_kind: str = "namespace", default_release: str = "") -> dict[str, Host]:
        if not table:
            self.fail("[hosts]", "no host defined")
        hosts: dict[str, Host] = {}
        used: dict[IPv4Address, str] = {}
        for name, spec in table.items():
            what = f"host {name}"
            if not HOST_NAME.match(name) or len(name) > MAX_HOST_NAME:
                self.fail(what, "invalid host name (lowercase letters, digits and -, "
                                f"at most {MAX_HOST_NAME} characters)")
            spec = self.table(spec, what)
            self.keys(spec, HOST_KEYS, what)
            roles = spec.get("roles", [])
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                self.fail(what, "roles must be a list of strings")
            for role in roles:
                if role not in KNOWN_ROLES:
                    self.fail(what, f"unknown role {role!r} (known: {', '.join(KNOWN_ROLES)})")
            if len(set(roles)) != len(roles):
                self.fail(what, "a role is listed twice")
            forward = spec.get("forward", False)
            if not isinstance(forward, bool):
                self.fail(what, "forward must be true or false")
            interfaces = self.interfaces(spec.get("interfaces", []), what, name, networks, used)
            routes = self.routes(spec.get("routes", []), what, interfaces, networks)
            kind = self.kind(spec.get("kind", default_kind), f"{what}: kind")
            release = self.release(spec.get("release", ""), f"{what}: release")
            if release and kind != "system":
                # A namespace host runs the machine's own programs: its release is the machine's.
                self.fail(what, "release applies to full-system hosts only (kind = \"system\")")
            hosts[name] = Host(name=name, roles=tuple(roles), forward=forward,
                               interfaces=interfaces, routes=routes,
                               description=self.string(spec.get("description", ""), what),
                               kind=kind, release=release or (default_release if kind == "system" else ""))
        return hosts

    def interfaces(self, items, what, host, networks, used) -> list[Interface]:
        if not isinstance(items, list) or not items:
            self.fail(what, "needs a list of interfaces (at least one)")
        if len(items) > MAX_INTERFACES:
            self.fail(what, f"more than {MAX_INTERFACES} interfaces")
        result: list[Interface] = []
        for index, item in enumerate(items):
            item = self.table(item, f"{what}: interface {index}")
            self.keys(item, INTERFACE_KEYS, f"{what}: interface {index}")
            ifname = item.get("name", f"eth{index}")
            iwhat = f"{what}: interface {ifname}"
            if not isinstance(ifname, str) or not re.match(r"^[a-z][a-z0-9]{0,14}$", ifname):
                self.fail(iwhat, "invalid interface name")
            if any(i.name == ifname for i in result):
                self.fail(iwhat, "interface name used twice")
            if "network" not in item:
                self.fail(iwhat, "missing network")
            netname = self.string(item["network"], iwhat)
            if netname not in networks:
                self.fail(iwhat, f"unknown network {netname!r} (networks: {', '.join(networks)})")
            if any(i.network == netname for i in result):
                self.fail(iwhat, f"a second interface on {netname}")
            if "address" not in item:
                self.fail(iwhat, "missing address")
            address = self.address(item["address"], iwhat)
            subnet = networks[netname].subnet
            if address not in subnet:
                self.fail(what, f"address {address} is not in {netname} ({subnet})")
            if subnet.prefixlen < 31 and address in (subnet.network_address, subnet.broadcast_address):
                self.fail(what, f"address {address} is the network or broadcast address of {netname}")
            if address in used:
                self.fail(what, f"address {address} already used by {used[address]}")
            used[address] = host
            result.append(Interface(name=ifname, network=netname, address=address,
                                    prefixlen=subnet.prefixlen))
        return result

    def routes(self, items, what, interfaces, networks) -> list[Route]:
        if not isinstance(items, list):
            self.fail(what, "routes must be a list")
        result: list[Route] = []
        own = {i.address for i in interfaces}
        for index, item in enumerate(items):
            rwhat = f"{what}: route {index}"
            item = self.table(item, rwhat)
            self.keys(item, ROUTE_KEYS, rwhat)
            if "to" not in item or "via" not in item:
                self.fail(rwhat, "needs both 'to' and 'via'")
            destination = self.subnet(item["to"], rwhat)
            via = self.address(item["via"], rwhat)
            rwhat = f"{what}: route to {destination}"
            if via in own:
                self.fail(rwhat, f"gateway {via} is the host's own address")
            if not any(via in networks[i.network].subnet for i in interfaces):
                self.fail(rwhat, f"gateway {via} is not on any network of the host "
                                 f"({', '.join(i.network for i in interfaces)})")
            if any(r.destination == destination for r in result):
                self.fail(rwhat, "a second route to the same destination")
            result.append(Route(destination=destination, via=via))
        return result

    def floating(self, table: dict, networks: dict[str, Network],
                 hosts: dict[str, Host]) -> dict[str, FloatingGroup]:
        """Floating (VRRP) addresses: each group's addresses move together
        between its hosts, which must all sit on each address's network."""
        groups: dict[str, FloatingGroup] = {}
        used = {i.address: h.name for h in hosts.values() for i in h.interfaces}
        member_of: dict[str, str] = {}
        vrids: dict[tuple[str, int], str] = {}
        for index, (name, spec) in enumerate(table.items()):
            what = f"floating {name}"
            if not HOST_NAME.match(name) or len(name) > MAX_HOST_NAME:
                self.fail(what, "invalid name (lowercase letters, digits and -, "
                                f"at most {MAX_HOST_NAME} characters)")
            if name in hosts:
                # The group's name resolves to its addresses, like a host's.
                self.fail(what, f"same name as host {name}")
            spec = self.table(spec, what)
            self.keys(spec, FLOATING_KEYS, what)
            members = spec.get("hosts")
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                self.fail(what, "hosts must be a list of host names")
            if len(members) < 2:
                self.fail(what, "needs at least two hosts to float between")
            if len(set(members)) != len(members):
                self.fail(what, "a host is listed twice")
            for member in members:
                if member not in hosts:
                    self.fail(what, f"unknown host {member!r}")
                if member in member_of:
                    self.fail(what, f"host {member} already belongs to floating {member_of[member]}")
                member_of[member] = name
            roles = {hosts[m].roles for m in members}
            if len(roles) != 1:
                self.fail(what, "its hosts must have the same roles, to stand in for each other")
            vrid = spec.get("vrid", index + 1)
            if not isinstance(vrid, int) or isinstance(vrid, bool) or not 1 <= vrid <= 255:
                self.fail(what, f"vrid must be an integer from 1 to 255, not {vrid!r}")
            items = spec.get("addresses")
            if not isinstance(items, list) or not items:
                self.fail(what, "needs a list of addresses (at least one)")
            addresses = []
            for number, item in enumerate(items):
                awhat = f"{what}: address {number}"
                item = self.table(item, awhat)
                self.keys(item, FLOATING_ADDRESS_KEYS, awhat)
                if "network" not in item or "address" not in item:
                    self.fail(awhat, "needs both 'network' and 'address'")
                netname = self.string(item["network"], awhat)
                if netname not in networks:
                    self.fail(awhat, f"unknown network {netname!r} (networks: {', '.join(networks)})")
                if any(a.network == netname for a in addresses):
                    self.fail(awhat, f"a second address on {netname}")
                address = self.address(item["address"], awhat)
                subnet = networks[netname].subnet
                if address not in subnet:
                    self.fail(what, f"address {address} is not in {netname} ({subnet})")
                if subnet.prefixlen < 31 and address in (subnet.network_address,
                                                         subnet.broadcast_address):
                    self.fail(what, f"address {address} is the network or broadcast address "
                                    f"of {netname}")
                if address in used:
                    self.fail(what, f"address {address} already used by {used[address]}")
                used[address] = name
                for member in members:
                    if netname not in hosts[member].networks:
                        self.fail(what, f"host {member} has no interface on {netname}")
                if (netname, vrid) in vrids:
                    self.fail(what, f"vrid {vrid} already used on {netname} by "
                                    f"floating {vrids[(netname, vrid)]}")
                vrids[(netname, vrid)] = name
                addresses.append(FloatingAddress(network=netname, address=address,
                                                 prefixlen=subnet.prefixlen))
            link = self.link(spec.get("link", ""), what, members, addresses, networks, hosts)
            groups[name] = FloatingGroup(name=name, hosts=tuple(members), addresses=tuple(addresses),
                                         vrid=vrid, description=self.string(
                                             spec.get("description", ""), what), link=link)
        return groups

    def link(self, value, what, members, addresses, networks, hosts) -> str:
        """A group's own link: a network its members are on, and nobody else.

        VRRPv3 has no authentication and conntrackd's sync none either: any
        host that can send on the network they travel on can take the
        addresses or feed the firewall connections. On a link of their own
        nobody else can, so one stranger on it is a mistake, not a detail.
        """
        link = self.string(value, f"{what}: link")
        if not link:
            return ""
        lwhat = f"{what}: link {link}"
        if link not in networks:
            self.fail(f"{what}: link", f"unknown network {link!r} (networks: {', '.join(networks)})")
        for member in members:
            if link not in hosts[member].networks:
                self.fail(lwhat, f"host {member} has no interface on it")
        for host in hosts.values():
            if host.name not in members and link in host.networks:
                self.fail(lwhat, f"host {host.name} is on it too: only {', '.join(members)} may "
                                 "be, since their adverts and sync trust whoever is on it")
        for floating in addresses:
            if floating.network == link:
                self.fail(lwhat, f"floating address {floating.address} is on it: the addresses "
                                 "belong on the networks others reach them on")
        return link

    def counts(self, topo: Topology):
        """The architecture's shape: one entry, one balancer, one database..."""
        for role in SINGLE_ROLES:
            found = topo.with_role(role)
            names = ", ".join(h.name for h in found) or "none"
            if len(found) == 1:
                continue
            if len(found) > 1 and role in GROUPABLE_ROLES:
                groups = {topo.floating_of(h.name) for h in found}
                group = groups.pop() if len(groups) == 1 else None
                if group is not None and set(group.hosts) == {h.name for h in found}:
                    continue
                self.fail(f"role {role}", f"{len(found)} hosts ({names}) must share one "
                                          "[floating] group to act as one")
            self.fail(f"role {role}", f"exactly one host needed, found {len(found)} ({names})")
        for role in OPTIONAL_SINGLE_ROLES:
            found = topo.with_role(role)
            if len(found) > 1:
                names = ", ".join(h.name for h in found)
                self.fail(f"role {role}", f"at most one host, found {len(found)} ({names})")
        for role in REQUIRED_ROLES:
            if not topo.with_role(role):
                self.fail(f"role {role}", "at least one host needed, found none")
        # Several database hosts are one replicated cluster: electing its
        # primary needs a majority of an odd number of consensus members.
        databases = topo.with_role("database")
        consensus = topo.with_role("consensus")
        names = ", ".join(h.name for h in consensus) or "none"
        if len(databases) > 1 and (len(consensus) < 3 or len(consensus) % 2 == 0):
            self.fail("role consensus", f"{len(databases)} database hosts need an odd number of "
                                        f"consensus hosts, at least 3 (found {len(consensus)}: {names})")
        if consensus and len(databases) < 2:
            self.fail("role consensus", "only a replicated database (two database hosts or more) "
                                        "uses consensus hosts")
        storage = topo.with_role("storage")
        replica = topo.settings.get("storage", {}).get("replica")
        if replica is None:
            self.fail("[storage]", "missing replica (the number of storage hosts)")
        if not isinstance(replica, int) or isinstance(replica, bool) or replica < 1:
            self.fail("[storage] replica", f"must be a positive integer, not {replica!r}")
        if len(storage) != replica:
            names = ", ".join(h.name for h in storage) or "none"
            self.fail("role storage", f"{len(storage)} storage hosts ({names}) "
                                      f"for [storage] replica = {replica}")
