"""nas1–nas3: a GlusterFS volume replicated on every storage node.

Every node runs glusterd under its init; the first node probes the others
(waiting until each is a connected member of the pool), creates the volume
with one brick per node and the scenario's replica count, starts it, and sets
`network.ping-timeout` so a dead node stalls clients for seconds, not the
default 42.

The bricks serve only the app servers' addresses (`auth.allow`): without it
any host that reached a node could mount the volume. The storage nodes' own
clients (self-heal daemons, `heal info`) need no entry: glusterd gives the
pool's members a volfile that logs in with the volume's internal credentials
(measured: a self-heal daemon started afresh with only the app servers
listed connected to all three bricks). The guard (guard.py) sets it again on
every deployment, a scale's included, so a new server is let in before it mounts.
"""

from pyinfra import host
from pyinfra.api import StringCommand, operation

from quizstack.deploy import ops
from quizstack.deploy.render_guard import app_addresses
from quizstack.deploy.roles import Phase

GLUSTER = "gluster --mode=script"


def phases(plan, context):
    names = tuple(name for name, _ in plan.storage_hosts)
    return [
        Phase("storage", "glusterd", names, add_daemon_ops),
        Phase("storage", "volume", names[:1], add_volume_ops, needs=("storage: glusterd",)),
    ]


def add_daemon_ops(plan, context):
    ops.directory(plan.brick.rsplit("/", 1)[0], name="brick parent directory")
    ops.service("glusterd", "/usr/sbin/glusterd -N", unit="glusterd", priority=100,
                name="glusterd service")
    ops.wait_until(f"{GLUSTER} pool list", "glusterd to answer", name="wait: glusterd ready")


def pool_members(lines):
    """Parse `gluster pool list`: {hostname: state} of the other members."""
    members = {}
    for line in lines[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[1] != "localhost":
            members[parts[1]] = parts[2]
    return members


def volume_info(lines):
    """Parse `gluster volume info NAME`: its fields and its bricks."""
    info, bricks = {}, []
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key.startswith("Brick") and key[5:].isdigit():
            bricks.append(value)
        else:
            info[key] = value
    info["bricks"] = bricks
    return info


@operation()
def peers(addresses):
    members = pool_members(host.get_fact(ops.Lines, command=f"{GLUSTER} pool list"))
    for address in addresses:
        if address not in members:
            yield StringCommand(*GLUSTER.split(), "peer", "probe", address)


@operation()
def volume(volume_name, replica, bricks, ping_timeout):
    info = volume_info(host.get_fact(ops.Lines, command=f"{GLUSTER} volume info {volume_name}"))
    if not info["bricks"]:
        # Bricks live on the nodes' root filesystems: gluster wants `force` for that.
        yield StringCommand(*GLUSTER.split(), "volume", "create", volume_name, "replica",
                            str(replica), *bricks, "force")
    elif info["bricks"] != list(bricks):
        raise ValueError(f"volume {volume_name} exists with bricks {info['bricks']}, "
                         f"the scenario wants {list(bricks)}")
    if info.get("Status") != "Started":
        yield StringCommand(*GLUSTER.split(), "volume", "start", volume_name)
    current = host.get_fact(ops.Lines, command=(
        f"{GLUSTER} volume get {volume_name} network.ping-timeout"))
    if not any(line.split()[-1:] == [str(ping_timeout)] for line in current[1:]):
        yield StringCommand(*GLUSTER.split(), "volume", "set", volume_name,
                            "network.ping-timeout", str(ping_timeout))


def volume_clients(plan):
    """Who may mount the volume: the app servers, by their address toward the storage."""
    return tuple(str(a) for a in app_addresses(plan, plan.storage_hosts[0][1]))


def option_value(lines, option):
    """The value in `gluster volume get VOL OPTION`'s answer (None when unreadable)."""
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == option:
            return parts[1]
    return None


@operation()
def auth_allow(volume_name, addresses):
    """auth.allow set to `addresses` (read when the operation runs, so in the
    volume phase after the volume is made; before that, nothing to set)."""
    info = volume_info(host.get_fact(ops.Lines, command=f"{GLUSTER} volume info {volume_name}"))
    if not info["bricks"]:
        return
    wanted = ",".join(addresses)
    current = option_value(host.get_fact(ops.Lines, command=(
        f"{GLUSTER} volume get {volume_name} auth.allow")), "auth.allow")
    if current != wanted:
        yield StringCommand(*GLUSTER.split(), "volume", "set", volume_name, "auth.allow", wanted)


def add_auth_ops(plan):
    """On the first storage node: the volume admits exactly `volume_clients`."""
    auth_allow(plan.volume, volume_clients(plan), name=f"volume {plan.volume}: auth.allow")


def add_volume_ops(plan, context):
    others = [str(address) for _, address in plan.storage_hosts[1:]]
    peers(others, name="peer probe")
    count = len(others)
    ops.wait_until(
        f"[ $({GLUSTER} pool list | grep -c -w Connected) -ge {count + 1} ]",
        f"{count} peers connected in the pool", name="wait: peers in cluster")
    bricks = [f"{address}:{plan.brick}" for _, address in plan.storage_hosts]
    volume(plan.volume, plan.replica, bricks, plan.ping_timeout, name=f"volume {plan.volume}")
    add_auth_ops(plan)
    ops.wait_until(
        f"[ $({GLUSTER} volume status {plan.volume} detail | grep -c '^Online.*: Y') "
        f"-ge {len(bricks)} ]", f"every brick of {plan.volume} online", name="wait: bricks online")
