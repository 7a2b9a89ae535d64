"""The topology as a Graphviz DOT graph: the text behind `quizstack map`.

Networks are boxes, hosts are ellipses labelled with their roles, and each
edge carries the host's address on that network, like VNX's map; a pair's
own link is a dashed box naming its pair. Pure: the CLI hands the text to
`dot` to draw it.
"""

from __future__ import annotations

from quizstack.topology.model import Topology

ROLE_COLOURS = {
    "client": "#dbeafe",
    "firewall": "#fecaca",
    "loadbalancer": "#fde68a",
    "web": "#bbf7d0",
    "storage": "#e9d5ff",
    "database": "#fed7aa",
    "consensus": "#e5e7eb",
}


def _quote(text: str) -> str:
    """A DOT string; line breaks in labels become DOT's \\n."""
    return '"' + text.replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(topo: Topology) -> str:
    lines = [
        f"graph {_quote(topo.name)} {{",
        "  graph [rankdir=LR, fontname=Helvetica, label="
        + _quote(f"scenario {topo.name}") + ", labelloc=t];",
        "  node [fontname=Helvetica, fontsize=11];",
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    # A pair's own link (its adverts and sync, nobody else on it) is drawn
    # dashed and says whose it is, so it never reads as a way through.
    links = {g.link: g.name for g in topo.floating.values() if g.link}
    for net in topo.networks.values():
        label = f"{net.name}\n{net.subnet}"
        style = "rounded,filled"
        if net.name in links:
            label += f"\n{links[net.name]}'s own link"
            style += ",dashed"
        lines.append(f"  {_quote('net:' + net.name)} [shape=box, style={_quote(style)}, "
                     f"fillcolor=\"#f3f4f6\", label={_quote(label)}];")
    for host in topo.hosts.values():
        role = host.roles[0] if host.roles else ""
        colour = ROLE_COLOURS.get(role, "#ffffff")
        label = host.name + (f"\n{', '.join(host.roles)}" if host.roles else "")
        if host.forward:
            label += "\n(forwards)"
        lines.append(f"  {_quote('host:' + host.name)} [shape=ellipse, style=filled, "
                     f"fillcolor={_quote(colour)}, label={_quote(label)}];")
    # Edge direction sets dot's ranks: each host sits right of its first
    # network and left of its others, so the picture reads like the chain
    # clients - LAN1 - fw - LAN2 - lb - LAN3 - servers - LAN4 - storage.
    order = {name: index for index, name in enumerate(topo.networks)}
    for host in topo.hosts.values():
        ifaces = sorted(host.interfaces, key=lambda i: order[i.network])
        node = _quote("host:" + host.name)
        for position, iface in enumerate(ifaces):
            net = _quote("net:" + iface.network)
            label = _quote(f"{iface.name} {iface.address}")
            before = position == 0 and not (len(ifaces) == 1 and order[iface.network] == 0)
            ends = f"{net} -- {node}" if before else f"{node} -- {net}"
            lines.append(f"  {ends} [label={label}];")
    # A pair's floating addresses: a diamond on each of its networks, dashed
    # to the members that can hold it.
    for group in topo.floating.values():
        for floating in group.addresses:
            node = _quote(f"vip:{group.name}:{floating.network}")
            label = f"{group.name}\n{floating.address}"
            lines.append(f"  {node} [shape=diamond, style=filled, fillcolor=\"#fff7ed\", "
                         f"fontsize=9, label={_quote(label)}];")
            lines.append(f"  {_quote('net:' + floating.network)} -- {node};")
            for member in group.hosts:
                lines.append(f"  {node} -- {_quote('host:' + member)} [style=dashed, "
                             "label=\"VRRP\"];")
    lines.append("}")
    return "\n".join(lines) + "\n"
