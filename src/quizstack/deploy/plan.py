"""What the service needs from a topology: who talks to whom, on which address.

The deployment roles never look for addresses themselves: they read a Plan, a
pure function of the topology and its settings. Building the plan is also the
last validation before anything changes — a scenario the service cannot run on
(no shared network between the servers and the database, a replica count the
storage hosts cannot hold, ...) fails here with one clear line, before the
first host is touched.
"""

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from quizstack.errors import ScenarioError

# The balancing policies a scenario may choose: round-robin (the seed's
# requirement), least connections, and least connections weighted by an agent
# on every server that reports its measured load (probes/agent.py).
BALANCES = ("roundrobin", "leastconn", "load")

DEFAULTS = {
    # Threads: a request waiting on the shared volume (an upload while a
    # storage node is lost) must not leave a server without a free worker for
    # reads and health checks (docs/reliability.md).
    # balance: how HAProxy picks a server (BALANCES; render.haproxy_cfg says how each works).
    # demo: the seed's demo users with their published passwords (admin/1234,
    # pepe/5678), a teaching setup only; otherwise the administrator's password
    # is generated per deployment and there is no demo user.
    "service": {"port": 80, "app_port": 8000, "workers": 2, "threads": 4, "balance": "roundrobin",
                "demo": False},
    "storage": {"volume": "nas", "replica": 3, "ping_timeout": 3,
                "brick": "/var/lib/quizstack/bricks/nas", "mount": "/var/lib/quiz/nas"},
    # A replicated database: Patroni's timings (docs/reliability.md says why
    # they are safe: loop_wait + 2 x retry_timeout <= ttl).
    "database": {"name": "quiz", "user": "quiz", "port": 5432, "cluster": "quiz",
                 "ttl": 6, "loop_wait": 1, "retry_timeout": 2},
    # The management network: where ges reaches every host by SSH and nagios
    # watches them; the clients have no interface on it.
    "management": {"network": "MGMT", "nagios_port": 80},
}


@dataclass(frozen=True)
class Backend:
    """An application server as the load balancer and the database see it."""

    name: str
    address: IPv4Address        # where the load balancer reaches it


@dataclass(frozen=True)
class Pair:
    """Hosts of one role that stand in for each other behind floating addresses (VRRP)."""

    name: str                  # the floating group's name
    role: str
    vrid: int
    hosts: tuple               # the preferred host first
    addresses: tuple           # (network, "address/prefix"), moving together
    interfaces: dict           # host -> {network: interface name}
    own: dict                  # host -> {network: its own address}
    sync_network: str = ""     # where the members talk to each other (adverts, conntrackd)
    link: bool = False         # sync_network is the members' own link: nobody else is on it

    def interface(self, host, network):
        return self.interfaces[host][network]

    def peers(self, host):
        return tuple(h for h in self.hosts if h != host)


@dataclass(frozen=True)
class Management:
    """The operators' way in (ges), the monitoring (nagios) and the central logs, on their own network."""

    network: str
    subnet: IPv4Network
    addresses: dict                      # host -> its address on the management network
    ges: str = ""                        # the management host (SSH from the clients), if any
    ges_address: IPv4Address = None      # where the clients reach it, through the firewall
    nagios: str = ""                     # the monitoring host, if any
    nagios_address: IPv4Address = None   # where the clients reach its web interface
    nagios_port: int = 80
    logs: str = ""                       # the central logs host (collector), if any

    def address(self, host):
        return self.addresses[host]

    @property
    def managed(self):
        """Every host ges manages: all but itself, in file order."""
        return tuple(h for h in self.addresses if h != self.ges)


@dataclass(frozen=True)
class Plan:
    port: int
    app_port: int
    workers: int
    threads: int
    database_host: str                   # the first database host (the only one, alone)
    database_address: IPv4Address
    database_port: int
    database_name: str
    database_user: str
    database_cluster: str
    app_subnet: IPv4Network              # the only network pg_hba admits
    storage_hosts: tuple                 # (name, address) in file order
    volume: str
    replica: int
    ping_timeout: int
    brick: str
    mount: str
    backends: tuple                      # of Backend, in file order
    lb_hosts: tuple                      # one, or a pair sharing floating addresses
    lb_address: IPv4Address              # the address clients are allowed to reach
    lb_backend_addresses: tuple          # each balancer's own address on the servers' network
    fw_hosts: tuple
    fw_outside: tuple                    # (interface name, subnet) facing the clients
    clients: tuple                       # client host names
    lab_addresses: dict = field(default_factory=dict)  # host (or floating group) -> addresses
    pairs: tuple = ()                    # of Pair: the firewall and balancer pairs, if any
    database_hosts: tuple = ()           # every database host: more than one is a replicated cluster
    database_addresses: tuple = ()       # their addresses on the app servers' network, same order
    consensus_hosts: tuple = ()          # (name, address) of the consensus (etcd) members
    failover: tuple = (6, 1, 2)          # Patroni's ttl, loop_wait, retry_timeout (seconds)
    management: Management = None        # the management network, ges and nagios, if any
    balance: str = "roundrobin"          # one of BALANCES
    demo: bool = False                   # the seed's demo users and passwords (a teaching setup)

    @property
    def media_root(self):
        return self.mount.rstrip("/") + "/media"

    @property
    def web_hosts(self):
        return tuple(b.name for b in self.backends)

    @property
    def replicated(self):
        """Whether the database is a replicated cluster with automatic failover."""
        return len(self.database_hosts) > 1

    def pair_of(self, host):
        """The pair a host belongs to, or None for a host that stands alone."""
        return next((p for p in self.pairs if host in p.hosts), None)


def _settings(topology, section):
    merged = dict(DEFAULTS[section])
    merged.update(getattr(topology, "settings", {}).get(section, {}) or {})
    return merged


def _one(topology, role):
    hosts = topology.with_role(role)
    if len(hosts) != 1:
        raise ScenarioError(f"{_where(topology)}: the service needs exactly one {role} host, "
                            f"found {len(hosts)}")
    return hosts[0]


def _one_or_pair(topology, role):
    """The host of a role, or the hosts of the floating group that plays it."""
    hosts = topology.with_role(role)
    if not hosts:
        raise ScenarioError(f"{_where(topology)}: the service needs a {role} host, found none")
    if len(hosts) > 1:
        group = topology.floating_of(hosts[0].name)
        if group is None or set(group.hosts) != {h.name for h in hosts}:
            raise ScenarioError(f"{_where(topology)}: the {role} hosts "
                                f"({', '.join(h.name for h in hosts)}) share no floating group")
    return hosts


def _pair(topology, role, hosts, shared_network):
    """The pair behind a role's floating group, or None for a host alone.

    Its members talk to each other on the group's own link when the
    scenario gives one (nobody else can speak VRRP or the sync there), else
    on `shared_network`, the one the firewall and balancer share.
    """
    group = topology.floating_of(hosts[0].name)
    if group is None:
        return None
    sync_network = group.link or shared_network
    # The management network carries no floating address and no advert.
    service = [i for h in hosts for i in h.interfaces if i.network != _management_network(topology)]
    interfaces = {h.name: {i.network: i.name for i in h.interfaces if i in service} for h in hosts}
    own = {h.name: {i.network: i.address for i in h.interfaces if i in service} for h in hosts}
    return Pair(name=group.name, role=role, vrid=group.vrid,
                hosts=tuple(group.hosts),
                addresses=tuple((a.network, a.cidr) for a in group.addresses),
                interfaces=interfaces, own=own, sync_network=sync_network,
                link=bool(group.link))


def _where(topology):
    source = getattr(topology, "source", None)
    return str(source) if source else topology.name


def _management_network(topology):
    """The management network's name, when the scenario has one (never a service path)."""
    if any(topology.with_role(r) for r in ("management", "monitoring", "logs")):
        return str(_settings(topology, "management")["network"])
    return None


def _shared(topology, a, b):
    """The first network both hosts are on, as (network name, a's address, b's address).

    The management network does not count: the service never travels on it.
    """
    b_nets = {i.network: i for i in b.interfaces}
    management = _management_network(topology)
    for i in a.interfaces:
        if i.network in b_nets and i.network != management:
            return i.network, i.address, b_nets[i.network].address
    raise ScenarioError(f"{_where(topology)}: hosts {a.name} and {b.name} share no network, "
                        "but the service needs them to talk directly")


def _failover(topology, database):
    ttl, loop_wait, retry = (int(database[k]) for k in ("ttl", "loop_wait", "retry_timeout"))
    if loop_wait + 2 * retry > ttl or min(ttl, loop_wait, retry) < 1:
        # Patroni's own rule: a primary that cannot reach the consensus for a
        # whole retry must still have time to step down before its lease ends.
        raise ScenarioError(f"{_where(topology)}: [database] needs loop_wait + 2 x retry_timeout "
                            f"<= ttl (got {loop_wait} + 2 x {retry} > {ttl})")
    return ttl, loop_wait, retry


def _management(topology, fw, clients):
    """The management network, or None when the scenario has no ges, nagios or logs host."""
    ges = topology.with_role("management")
    nagios = topology.with_role("monitoring")
    logs = topology.with_role("logs")
    if not ges and not nagios and not logs:
        return None
    settings = _settings(topology, "management")
    network = str(settings["network"])
    if network not in topology.networks:
        raise ScenarioError(f"{_where(topology)}: [management] network {network!r} is not one of "
                            "the scenario's networks")
    addresses = {}
    for host in topology.hosts.values():
        on = {i.network: i.address for i in host.interfaces}
        if host in clients:
            if network in on:
                raise ScenarioError(f"{_where(topology)}: client {host.name} is on the management "
                                    f"network {network}: the clients reach ges only through the firewall")
            continue
        if network not in on:
            raise ScenarioError(f"{_where(topology)}: host {host.name} has no interface on the "
                                f"management network {network}")
        addresses[host.name] = on[network]

    def front(hosts, what):
        if not hosts:
            return "", None
        host = hosts[0]
        fw_nets = {i.network for i in fw.interfaces} - {network}
        for i in host.interfaces:
            if i.network in fw_nets:
                return host.name, i.address
        raise ScenarioError(f"{_where(topology)}: {what} host {host.name} shares no network with "
                            f"firewall {fw.name} (besides {network}): the clients could not reach it")

    if logs and logs[0] in clients:
        raise ScenarioError(f"{_where(topology)}: logs host {logs[0].name} is a client: the "
                            f"central logs are reached on the management network {network}")
    ges_name, ges_address = front(ges, "management")
    nagios_name, nagios_address = front(nagios, "monitoring")
    return Management(network=network, subnet=topology.networks[network].subnet,
                      addresses=addresses, ges=ges_name, ges_address=ges_address,
                      nagios=nagios_name, nagios_address=nagios_address,
                      nagios_port=int(settings["nagios_port"]),
                      logs=logs[0].name if logs else "")


def build_plan(topology):
    service = _settings(topology, "service")
    storage = _settings(topology, "storage")
    database = _settings(topology, "database")

    balance = str(service["balance"])
    if not isinstance(service["demo"], bool):
        raise ScenarioError(f"{_where(topology)}: [service] demo must be true or false, "
                            f"not {service['demo']!r}")
    if balance not in BALANCES:
        raise ScenarioError(f"{_where(topology)}: [service] balance {balance!r} is not one of "
                            f"{', '.join(BALANCES)}")
    dbs = topology.with_role("database")
    if not dbs:
        raise ScenarioError(f"{_where(topology)}: the service needs a database host, found none")
    db = dbs[0]
    lbs = _one_or_pair(topology, "loadbalancer")
    fws = _one_or_pair(topology, "firewall")
    lb, fw = lbs[0], fws[0]
    webs = topology.with_role("web")
    nases = topology.with_role("storage")
    clients = topology.with_role("client")
    if not webs:
        raise ScenarioError(f"{_where(topology)}: the service needs at least one web host")
    if not clients:
        raise ScenarioError(f"{_where(topology)}: the checks need at least one client host")
    replica = int(storage["replica"])
    if replica < 1 or len(nases) != replica:
        raise ScenarioError(f"{_where(topology)}: volume {storage['volume']} has replica {replica} "
                            f"but the scenario has {len(nases)} storage hosts")

    db_net, _, db_address = _shared(topology, webs[0], db)
    database_addresses = []
    for other in dbs:
        net, _, address = _shared(topology, webs[0], other)
        if net != db_net:
            raise ScenarioError(f"{_where(topology)}: database host {other.name} is on {net}, "
                                f"{db.name} on {db_net}: a replicated database shares one network")
        database_addresses.append(address)
    consensus = tuple((h.name, _shared(topology, h, db)[1]) for h in topology.with_role("consensus"))
    backends = []
    for web in webs:
        _, backend_address, lb_address_for_web = _shared(topology, web, lb)
        net, _, _ = _shared(topology, web, db)
        if net != db_net:
            raise ScenarioError(f"{_where(topology)}: web host {web.name} reaches the database on "
                                f"{net}, the others on {db_net}")
        for nas in nases:
            _shared(topology, web, nas)
        backends.append(Backend(web.name, backend_address))
    storage_hosts = tuple((nas.name, _shared(topology, webs[0], nas)[2]) for nas in nases)

    front_net, _, _ = _shared(topology, fw, lb)
    lb_front = topology.service_address(lb, front_net)
    client_nets = {i.network for c in clients for i in c.interfaces}
    outside_of = {f.name: tuple((i.name, topology.networks[i.network].subnet)
                                for i in f.interfaces if i.network in client_nets) for f in fws}
    outside = outside_of[fw.name]
    if not outside:
        raise ScenarioError(f"{_where(topology)}: firewall {fw.name} shares no network with the clients")
    for other in fws[1:]:
        # One ruleset for the pair: it names the clients' side by interface.
        if outside_of[other.name] != outside:
            raise ScenarioError(f"{_where(topology)}: firewalls {fw.name} and {other.name} face the "
                                "clients on different interfaces; give them the same names")
    backend_net = _shared(topology, lb, webs[0])[0]
    pairs = tuple(p for p in (_pair(topology, "firewall", fws, front_net),
                              _pair(topology, "loadbalancer", lbs, front_net)) if p)
    lab_addresses = {h.name: tuple(i.address for i in h.interfaces)
                     for h in topology.hosts.values()}
    lab_addresses.update({g.name: tuple(a.address for a in g.addresses)
                          for g in topology.floating.values()})

    app_subnet = topology.networks[db_net].subnet
    return Plan(
        port=int(service["port"]),
        app_port=int(service["app_port"]),
        workers=int(service["workers"]),
        threads=int(service["threads"]),
        database_host=db.name,
        database_address=db_address,
        database_hosts=tuple(h.name for h in dbs),
        database_addresses=tuple(database_addresses),
        consensus_hosts=consensus,
        failover=_failover(topology, database),
        database_port=int(database["port"]),
        database_name=str(database["name"]),
        database_user=str(database["user"]),
        database_cluster=str(database["cluster"]),
        app_subnet=app_subnet,
        storage_hosts=storage_hosts,
        volume=str(storage["volume"]),
        replica=replica,
        ping_timeout=int(storage["ping_timeout"]),
        brick=str(storage["brick"]),
        mount=str(storage["mount"]),
        backends=tuple(backends),
        lb_hosts=tuple(h.name for h in lbs),
        lb_address=lb_front,
        lb_backend_addresses=tuple(h.address_on(backend_net) for h in lbs),
        fw_hosts=tuple(h.name for h in fws),
        fw_outside=outside,
        clients=tuple(c.name for c in clients),
        lab_addresses=lab_addresses,
        pairs=pairs,
        management=_management(topology, fw, clients),
        balance=balance,
        demo=service["demo"],
    )
