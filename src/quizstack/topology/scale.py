"""More or fewer hosts of a role, as a new version of the scenario's text.

`quizstack scale web=4` writes the servers it adds into the scenario (so the
file stays the one truth the lab, the deployment and the checks read) and
removes the ones it takes away. A new server copies the last one of its role:
same roles, networks and routes, each address the next free one after the
role's highest on that network. Servers leave from the last one up. Every
refusal (a count of 0, no addresses left) is one line, before anything
changes; the result is validated like any scenario file.
"""

import re
from ipaddress import IPv4Address

from quizstack.errors import ScenarioError
from quizstack.topology.loader import parse_scenario

HEADER = re.compile(r"^\[[^\[\]]+\]\s*(#.*)?$")
NUMBERED = re.compile(r"^(.*?)(\d+)$")
ADDED_MARK = "# Added by `quizstack scale"


def _blocks(lines):
    """(start, end) line ranges of each [table], comments before the next header left out."""
    starts = [i for i, line in enumerate(lines) if HEADER.match(line)]
    ranges = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        ranges.append((start, end))
    return ranges


def _block_of(lines, host):
    header = f"[hosts.{host}]"
    for start, end in _blocks(lines):
        if lines[start].split("#", 1)[0].strip() == header:
            return start, end
    raise ScenarioError(f"host {host}: not found as a [hosts.{host}] table in the scenario's text")


def _next_name(names, template):
    match = NUMBERED.match(template)
    prefix, number = (match.group(1), int(match.group(2))) if match else (template, 1)
    while True:
        number += 1
        if f"{prefix}{number}" not in names:
            return f"{prefix}{number}"


def _used(topology):
    used = {i.address for h in topology.hosts.values() for i in h.interfaces}
    used |= {a.address for g in topology.floating.values() for a in g.addresses}
    return used


def _render_host(name, template, addresses, count):
    lines = [f"{ADDED_MARK} {template.roles[0]}={count}`, after {template.name}.",
             f"[hosts.{name}]",
             "roles = [" + ", ".join(f'"{r}"' for r in template.roles) + "]"]
    if template.forward:
        lines.append("forward = true")
    lines.append("interfaces = [")
    lines += [f'    {{ network = "{net}", address = "{addr}" }},' for net, addr in addresses]
    lines.append("]")
    if template.routes:
        routes = ", ".join(f'{{ to = "{r.destination}", via = "{r.via}" }}' for r in template.routes)
        lines.append(f"routes = [{routes}]")
    return lines


def scaled_text(text, topology, role, count, source="<scenario>"):
    """(new text, added host names, removed host names) with `count` hosts of `role`."""
    hosts = topology.with_role(role)
    where = source
    if not isinstance(count, int) or count < 1:
        raise ScenarioError(f"{where}: {role}={count}: the service needs at least one {role} host")
    if not hosts:
        raise ScenarioError(f"{where}: the scenario has no {role} host to copy")
    lines = text.splitlines()
    added, removed = [], []
    if count < len(hosts):
        for host in reversed(hosts[count:]):
            start, end = _block_of(lines, host.name)
            if start > 0 and lines[start - 1].startswith(ADDED_MARK):
                start -= 1
            while end < len(lines) and not lines[end].strip():
                end += 1
            del lines[start:end]
            removed.append(host.name)
        removed.reverse()
    elif count > len(hosts):
        template = hosts[-1]
        used = _used(topology)
        names = set(topology.hosts)
        new_lines = []
        for _ in range(count - len(hosts)):
            name = _next_name(names, template.name)
            if len(name) > 12:
                raise ScenarioError(f"{where}: {role}={count}: host name {name} would be too long")
            addresses = []
            for iface in template.interfaces:
                subnet = topology.networks[iface.network].subnet
                role_max = max(h.address_on(iface.network) for h in hosts
                               if iface.network in h.networks)
                candidate = IPv4Address(int(role_max) + 1)
                while candidate in used:
                    candidate = IPv4Address(int(candidate) + 1)
                if candidate not in subnet or candidate in (subnet.network_address,
                                                            subnet.broadcast_address):
                    raise ScenarioError(
                        f"{where}: {role}={count}: no free address left for {name} on "
                        f"{iface.network} ({subnet}) after {role_max}")
                used.add(candidate)
                addresses.append((iface.network, candidate))
            hosts = hosts + [template.__class__(name=name, roles=template.roles, forward=template.forward,
                                                interfaces=[iface.__class__(iface.name, net, addr, iface.prefixlen)
                                                            for iface, (net, addr) in zip(template.interfaces, addresses)],
                                                routes=template.routes)]
            names.add(name)
            new_lines += [""] + _render_host(name, template, addresses, count)
            added.append(name)
        _, end = _block_of(lines, template.name)
        lines[end:end] = new_lines
    new_text = "\n".join(lines) + "\n"
    # The result is a scenario like any other: validated before anything uses it.
    parse_scenario(new_text, source=where)
    return new_text, added, removed
