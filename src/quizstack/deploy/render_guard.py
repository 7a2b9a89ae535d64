"""The guard's files, as pure functions of the plan: each back-end host's own nftables table.

Why a guard at all: the app servers face the internet (through the firewall
and the balancers) and share the back-end network with the database, the
consensus and the storage hosts. The firewall in front never sees that
network's traffic, so a server taken over reached everything there: it
changed the cluster's settings through Patroni's REST API, read and wrote
etcd, and could mount the volume from anywhere (measured from s1 before
this). So each of these hosts drops whatever it receives by default and
admits each service's port only from the hosts that use it, named by
address from the plan:

- everyone: loopback, and the replies to its own connections (its logs over
  RELP, a standby's replication, a brick's self-heal);
- the management network: SSH from ges, NRPE and ping from nagios (what
  Nagios runs against these hosts it runs through NRPE, on the host itself,
  so nothing else of it arrives from outside); SSH to the host's other
  addresses from anyone, for the operators' first deployment of real hosts
  (sshd listens there only until the access role ran);
- a database host: PostgreSQL from the app servers (their router) and the
  other database hosts (replication, pg_rewind); Patroni's REST API from
  the same (the routers' GET /primary, the members' own calls);
- a consensus member: etcd's client port from the database hosts (Patroni)
  and the members; its peer port from the members only;
- a storage node: glusterd and the bricks from the app servers and the
  other storage nodes.

The table is ours alone (`inet quizstack_guard`): it is replaced in one nft
transaction and touches no other table. App servers are named one by one,
so a scale renders it again (deploy.restrict keeps the guard whole).

The first load must not cut the connections already open. Until a ruleset
uses conntrack in a network namespace, nothing there is tracked; when the
guard arrives, conntrack picks each open connection up at its next packet,
mid-stream, as `new`. Measured: with a rule that wanted a SYN for `new`, the
guard's first load in a running lab cut Patroni's connections to etcd, and
the primary demoted itself. So an admitted peer's packet to an
admitted port is let in whatever its flags (it may open that connection
anyway: nothing is widened), and so is a reply (not a SYN) from a port this
host uses on another guarded host, or on the logs host: what that host
admits from this one.
"""

from dataclasses import dataclass
from ipaddress import IPv4Address

from quizstack.deploy.render import (
    ETCD_CLIENT_PORT, ETCD_PEER_PORT, HEADER, NRPE_PORT, PATRONI_API_PORT,
)
from quizstack.deploy.render_logs import RELP_PORT

TABLE = "quizstack_guard"
CONF = "/etc/quizstack/guard.nft"
UNIT = "quizstack-guard"
UNIT_FILE = f"/etc/systemd/system/{UNIT}.service"
SSH_PORT = 22
GLUSTERD_PORTS = (24007, 24008)
# Gluster 10 gives each brick a port at random in glusterd's range (base-port
# to max-port in /etc/glusterfs/glusterd.vol, Debian's defaults): measured
# in the lab, the three bricks listened on 52773, 56159 and 58002.
BRICK_PORTS = (49152, 60999)


@dataclass(frozen=True)
class Admit:
    """One rule: new TCP connections (or ICMP echo) to `ports` from `sources` only.

    `sources` empty means from anywhere (SSH when the plan names no ges).
    A `reply` rule admits instead what comes back from `ports` on `sources`
    (the far end of a connection this host opened), never a SYN."""

    service: str            # what is admitted: "PostgreSQL", "etcd's peer port", ...
    who: str                # from whom, in words
    ports: tuple            # ints or (first, last) ranges; () for ICMP echo
    sources: tuple          # IPv4Address, in the plan's order
    icmp: bool = False
    reply: bool = False
    to: tuple = ()          # only to these addresses of the host (empty: any of them)

    @property
    def what(self):
        return f"replies from {self.who}: {self.service}" if self.reply else \
            f"{self.service} from {self.who}"


def guarded_hosts(plan):
    """The hosts that get a guard: database, consensus and storage hosts, each once."""
    names = list(plan.database_hosts or (plan.database_host,))
    names += [name for name, _ in plan.consensus_hosts]
    names += [name for name, _ in plan.storage_hosts]
    return tuple(dict.fromkeys(names))


def facing(plan, host, peer):
    """`host`'s own addresses on the network where it meets the address `peer`.

    The plan knows two subnets, the app servers' network to the database and
    the management network; a peer on neither (storage on a network of its
    own) is met on the host's addresses outside both."""
    peer = IPv4Address(str(peer))
    known = [plan.app_subnet] + ([plan.management.subnet] if plan.management else [])
    mine = plan.lab_addresses.get(host, ())
    for subnet in known:
        if peer in subnet:
            return tuple(a for a in mine if a in subnet)
    return tuple(a for a in mine if not any(a in subnet for subnet in known))


def app_addresses(plan, peer):
    """Every app server's address toward `peer`, in the plan's order."""
    return tuple(a for b in plan.backends for a in facing(plan, b.name, peer))


def _database_addresses(plan):
    if plan.database_hosts:
        return dict(zip(plan.database_hosts, plan.database_addresses))
    return {plan.database_host: plan.database_address}


def admissions(plan, host):
    """What `host` admits, as Admit rows (the order of the rendered rules):
    the connections others open to it, then the replies to those it opens."""
    return _serves(plan, host) + _replies(plan, host)


def _replies(plan, host):
    """The far ends of this host's own connections: each other guarded host's
    ports that admit this host, and the logs host's RELP port."""
    mine = set(plan.lab_addresses.get(host, ()))
    found = []
    for other in guarded_hosts(plan):
        if other == host:
            continue
        for admit in _serves(plan, other):
            if admit.icmp or not mine & set(admit.sources):
                continue
            theirs = tuple(a for mine_ in sorted(mine & set(admit.sources))
                           for a in facing(plan, other, mine_))
            found.append(Admit(admit.service, other, admit.ports,
                               tuple(dict.fromkeys(theirs)), reply=True))
    m = plan.management
    if m and m.logs and host in m.addresses and host != m.logs:
        found.append(Admit("RELP", "logs", (RELP_PORT,), (m.address(m.logs),),
                           reply=True))
    return found


def _serves(plan, host):
    """The connections `host` admits from others."""
    found = []
    m = plan.management
    if m and m.ges:
        found.append(Admit("SSH", "ges", (SSH_PORT,), (m.address(m.ges),)))
        # The first deployment of real hosts (`deploy --direct`) comes over
        # SSH from the operators' machine, to the host's first address, until
        # the access role hands the hosts to ges: its sshd then listens on
        # the management address only, where only ges is let in above.
        off = tuple(a for a in plan.lab_addresses.get(host, ()) if a not in m.subnet)
        if off:
            found.append(Admit("SSH", "anywhere, to its addresses off the management network "
                               "(where sshd stops listening once the access role ran)",
                               (SSH_PORT,), (), to=off))
    else:
        # No ges: the operators reach the host directly, from where the plan cannot say.
        found.append(Admit("SSH", "anywhere (no management host)", (SSH_PORT,), ()))
    if m and m.nagios and host in m.addresses:
        nagios = (m.address(m.nagios),)
        found.append(Admit("NRPE", "nagios", (NRPE_PORT,), nagios))
        found.append(Admit("ping", "nagios", (), nagios, icmp=True))

    databases = _database_addresses(plan)
    if host in databases:
        own = databases[host]
        peers = tuple(a for h, a in databases.items() if h != host)
        users = app_addresses(plan, own) + peers
        found.append(Admit("PostgreSQL", "the app servers and the other database hosts",
                           (plan.database_port,), users))
        if plan.replicated:
            found.append(Admit("Patroni's REST API", "the app servers' routers and the "
                               "other database hosts", (PATRONI_API_PORT,), users))

    members = dict(plan.consensus_hosts)
    if host in members:
        others = tuple(a for h, a in members.items() if h != host)
        clients = tuple(a for h, a in databases.items() if h != host and a not in others)
        found.append(Admit("etcd's client port", "Patroni on the database hosts and the members",
                           (ETCD_CLIENT_PORT,), clients + others))
        found.append(Admit("etcd's peer port", "the members", (ETCD_PEER_PORT,), others))

    nodes = dict(plan.storage_hosts)
    if host in nodes:
        own = nodes[host]
        others = tuple(a for h, a in nodes.items() if h != host)
        found.append(Admit("glusterd and the bricks", "the app servers and the other storage nodes",
                           (*GLUSTERD_PORTS, BRICK_PORTS),
                           app_addresses(plan, own) + others))
    return found


def _ports(ports):
    shown = [f"{p[0]}-{p[1]}" if isinstance(p, tuple) else str(p) for p in ports]
    return shown[0] if len(shown) == 1 else "{ " + ", ".join(shown) + " }"


def _rule(admit):
    where = ""
    if admit.sources:
        listed = list(dict.fromkeys(str(a) for a in admit.sources))
        where = f"ip saddr {listed[0]} " if len(listed) == 1 else \
            "ip saddr { " + ", ".join(listed) + " } "
    if admit.to:
        listed = [str(a) for a in admit.to]
        where += f"ip daddr {listed[0]} " if len(listed) == 1 else \
            "ip daddr { " + ", ".join(listed) + " } "
    if admit.icmp:
        return f"        {where}icmp type echo-request accept\n"
    if admit.reply:
        return (f"        {where}tcp sport {_ports(admit.ports)} tcp flags & syn == 0 "
                "ct state new accept\n")
    # Any flags: a connection open before the first load is picked up mid-stream.
    return f"        {where}tcp dport {_ports(admit.ports)} ct state new accept\n"


def guard_nft(plan, host):
    """The guard's ruleset for one host: `nft -f` replaces our table and nothing else.

    The first two lines make sure the table exists, then delete it, so the
    new table below replaces the old one in the same transaction (no moment
    without rules, and a second load changes nothing)."""
    rules = ""
    for admit in admissions(plan, host):
        rules += f"        # {admit.what}\n" + _rule(admit)
    return (
        "#!/usr/sbin/nft -f\n" + HEADER +
        f"table inet {TABLE}\n"
        f"delete table inet {TABLE}\n"
        "\n"
        f"table inet {TABLE} {{\n"
        "    chain input {\n"
        "        type filter hook input priority filter; policy drop;\n"
        "        iif \"lo\" accept\n"
        "        ct state established,related accept\n"
        "        ct state invalid drop\n"
        f"{rules}"
        "    }\n"
        "}\n"
    )


def guard_systemd_unit():
    """The guard on a systemd host: loaded before the network comes up, like Debian's
    nftables unit, but its own (a host's /etc/nftables.conf is left to others)."""
    return HEADER + (
        "[Unit]\n"
        "Description=quizstack's guard: this host's own nftables table\n"
        "Wants=network-pre.target\n"
        "Before=network-pre.target shutdown.target\n"
        "Conflicts=shutdown.target\n"
        "DefaultDependencies=no\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "StandardInput=null\n"
        f"ExecStart=/usr/sbin/nft -f {CONF}\n"
        # A reload replaces the table in one transaction: never a moment open.
        f"ExecReload=/usr/sbin/nft -f {CONF}\n"
        f"ExecStop=/usr/sbin/nft delete table inet {TABLE}\n"
        "\n"
        "[Install]\n"
        "WantedBy=sysinit.target\n"
    )
