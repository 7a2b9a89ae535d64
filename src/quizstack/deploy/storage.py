"""nas1–nas3: a GlusterFS volume replicated on every storage node.

Every node runs glusterd under its init; the first node probes the others
(waiting until each is a connected member of the pool), creates the volume
with one brick per node and the scenario's replica count, starts it, and sets
`network.ping-timeout` so a dead node stalls clients for seconds, not the
default 42.
"""

from pyinfra import host
from pyinfra.api import StringCommand, operation

from quizstack.deploy import ops
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


def add_volume_ops(plan, context):
    others = [str(address) for _, address in plan.storage_hosts[1:]]
    peers(others, name="peer probe")
    count = len(others)
    ops.wait_until(
        f"[ $({GLUSTER} pool list | grep -c -w Connected) -ge {count + 1} ]",
        f"{count} peers connected in the pool", name="wait: peers in cluster")
    bricks = [f"{address}:{plan.brick}" for _, address in plan.storage_hosts]
    volume(plan.volume, plan.replica, bricks, plan.ping_timeout, name=f"volume {plan.volume}")
    ops.wait_until(
        f"[ $({GLUSTER} volume status {plan.volume} detail | grep -c '^Online.*: Y') "
        f"-ge {len(bricks)} ]", f"every brick of {plan.volume} online", name="wait: bricks online")
