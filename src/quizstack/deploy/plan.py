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

DEFAULTS = {
    "service": {"port": 80, "app_port": 8000, "workers": 2},
    "storage": {"volume": "nas", "replica": 3, "ping_timeout": 5,
                "brick": "/var/lib/quizstack/bricks/nas", "mount": "/var/lib/quiz/nas"},
    "database": {"name": "quiz", "user": "quiz", "port": 5432, "cluster": "quiz"},
}


@dataclass(frozen=True)
class Backend:
    """An application server as the load balancer and the database see it."""

    name: str
    address: IPv4Address        # where the load balancer reaches it


@dataclass(frozen=True)
class Plan:
    port: int
    app_port: int
    workers: int
    database_host: str
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
    lb_host: str
    lb_address: IPv4Address              # the address clients are allowed to reach
    lb_backend_address: IPv4Address      # on the servers' network
    fw_host: str
    fw_outside: tuple                    # (interface name, subnet) facing the clients
    clients: tuple                       # client host names
    lab_addresses: dict = field(default_factory=dict)  # host -> all its addresses

    @property
    def media_root(self):
        return self.mount.rstrip("/") + "/media"

    @property
    def web_hosts(self):
        return tuple(b.name for b in self.backends)


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


def _where(topology):
    source = getattr(topology, "source", None)
    return str(source) if source else topology.name


def _shared(topology, a, b):
    """The first network both hosts are on, as (network name, a's address, b's address)."""
    b_nets = {i.network: i for i in b.interfaces}
    for i in a.interfaces:
        if i.network in b_nets:
            return i.network, i.address, b_nets[i.network].address
    raise ScenarioError(f"{_where(topology)}: hosts {a.name} and {b.name} share no network, "
                        "but the service needs them to talk directly")


def build_plan(topology):
    service = _settings(topology, "service")
    storage = _settings(topology, "storage")
    database = _settings(topology, "database")

    db = _one(topology, "database")
    lb = _one(topology, "loadbalancer")
    fw = _one(topology, "firewall")
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

    _, _, lb_front = _shared(topology, fw, lb)
    outside = []
    client_nets = {i.network for c in clients for i in c.interfaces}
    for i in fw.interfaces:
        if i.network in client_nets:
            outside.append((i.name, topology.networks[i.network].subnet))
    if not outside:
        raise ScenarioError(f"{_where(topology)}: firewall {fw.name} shares no network with the clients")

    app_subnet = topology.networks[db_net].subnet
    return Plan(
        port=int(service["port"]),
        app_port=int(service["app_port"]),
        workers=int(service["workers"]),
        database_host=db.name,
        database_address=db_address,
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
        lb_host=lb.name,
        lb_address=lb_front,
        lb_backend_address=_shared(topology, lb, webs[0])[1],
        fw_host=fw.name,
        fw_outside=tuple(outside),
        clients=tuple(c.name for c in clients),
        lab_addresses={h.name: tuple(i.address for i in h.interfaces)
                       for h in topology.hosts.values()},
    )
