"""What the service's own parts say during an experiment, read without disturbing it.

The experiment times a fault by what the components saw: HAProxy marking a
server DOWN, a VRRP backup taking the floating addresses, GlusterFS losing a
brick and healing it. These readings go through the hosts' own files and
sockets (HAProxy's stats socket and keepalived's state file, reached through
/proc/<init>/root, the host's mount namespace), so polling them ten times a
second costs no process; so does the volume clients' log. Only GlusterFS's
state is asked through its CLI, which may hang while a peer is away: such a
call counts as no answer. Every
function returns plain data and tolerates a host that is down.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime

from quizstack.check import parse_haproxy_stat
from quizstack.deploy.render import VRRP_STATE
from quizstack.errors import QuizstackError

GLUSTER = ["gluster", "--mode=script"]


def _root(lab, host):
    try:
        return f"/proc/{lab.init_pid(host)}/root"
    except QuizstackError:
        return None


def haproxy_servers(lab, host, backend="quiz_servers"):
    """{server: status} as HAProxy on `host` sees them, or {} if it does not answer."""
    root = _root(lab, host)
    if root is None:
        return {}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1)
    try:
        sock.connect(f"{root}/run/haproxy/admin.sock")
        sock.sendall(b"show stat\n")
        data = b""
        while len(data) < 1 << 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        return {}
    finally:
        sock.close()
    return parse_haproxy_stat(data.decode(errors="replace"), backend)


def vrrp_state(lab, host, pair):
    """The VRRP state keepalived last recorded on a member ("DOWN" if the host is off)."""
    root = _root(lab, host)
    if root is None:
        return "DOWN"
    try:
        with open(root + VRRP_STATE.format(name=pair.name)) as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


def vrrp_master(lab, pair):
    """The member that says it is master, if exactly one does."""
    masters = [h for h in pair.hosts if vrrp_state(lab, h, pair) == "MASTER"]
    return masters[0] if len(masters) == 1 else None


def active_balancer(lab, plan):
    """The load balancer that holds the service address (the only one, alone)."""
    pair = plan.pair_of(plan.lb_hosts[0])
    return vrrp_master(lab, pair) if pair else plan.lb_hosts[0]


def _gluster(lab, host, args, timeout):
    """A gluster CLI call on a host, or None when it fails or hangs (a peer is away)."""
    try:
        done = lab.run(host, GLUSTER + args, check=False, timeout=timeout)
    except QuizstackError:
        return None
    return done if done.returncode == 0 else None


def volume_client_saw(lab, plan, node, since):
    """The first app server's volume client saying it lost a storage node, after `since`.

    GlusterFS's client logs the moment it gives a brick up: "has not
    responded in the last N seconds" (a silent node, after the ping timeout)
    or "disconnected" (a refused one). Its log is read through the server's
    own filesystem; returns the wall-clock time of that line, or None.
    """
    index = [name for name, _ in plan.storage_hosts].index(node)
    root = _root(lab, plan.web_hosts[0])
    if root is None:
        return None
    log = f"{root}/var/log/glusterfs/{plan.mount.strip('/').replace('/', '-')}.log"
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    for line in tail.splitlines():
        if f"{plan.volume}-client-{index}:" not in line or not (
                "has not responded" in line or "disconnected from" in line):
            continue
        stamp = _gluster_time(line)
        if stamp is not None and stamp >= since:
            return stamp
    return None


def _gluster_time(line):
    """The wall-clock time of a GlusterFS log line ("[2026-11-27 08:29:33.002243 +0000] ...")."""
    if not line.startswith("["):
        return None
    try:
        return datetime.strptime(line[1:line.index("]")], "%Y-%m-%d %H:%M:%S.%f %z").timestamp()
    except ValueError:
        return None


def _storage_reader(lab, plan, avoid=()):
    for name, _ in plan.storage_hosts:
        if name not in avoid and _root(lab, name):
            return name
    return None


def bricks_online(lab, plan, avoid=()):
    """{brick host address: online?} from a running storage node's glusterd."""
    reader = _storage_reader(lab, plan, avoid)
    if reader is None:
        return {}
    done = _gluster(lab, reader, ["volume", "status", plan.volume, "detail"], timeout=10)
    if done is None:
        return {}
    online, brick = {}, None
    for line in done.stdout.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Brick":
            brick = value.removeprefix("Brick ").split(":")[0]
        elif key == "Online" and brick:
            online[brick] = value == "Y"
    return online


def heal_pending(lab, plan, avoid=()):
    """Entries waiting to be healed, summed over the bricks (None if unknown)."""
    reader = _storage_reader(lab, plan, avoid)
    if reader is None:
        return None
    done = _gluster(lab, reader, ["volume", "heal", plan.volume, "info"], timeout=10)
    if done is None:
        return None
    counts = [line.split(":", 1)[1].strip() for line in done.stdout.splitlines()
              if line.startswith("Number of entries:")]
    if not counts:
        return None
    if any(not c.isdigit() for c in counts):   # "-": a brick not connected yet
        return None
    return sum(int(c) for c in counts)


def problems(lab, plan, strict=False):
    """What keeps the service from its normal state, as short phrases (empty: converged).

    strict: a server counts as UP only when HAProxy says plain "UP", not "UP 1/2"
    (one check failed: it may be going down)."""
    found = []
    if plan.replicated:
        from quizstack.stack import database_members

        members = database_members(lab, plan)
        leaders = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
        others = [m for m in members if m.get("role") in ("replica", "sync_standby")
                  and m.get("state") in ("running", "streaming")]
        if not (len(leaders) == 1 and len(others) == len(plan.database_hosts) - 1
                and any(m.get("role") == "sync_standby" for m in others)):
            found.append("database: " + (", ".join(f"{m.get('name')} {m.get('role')} "
                                                   f"{m.get('state')}" for m in members)
                                         or "Patroni does not answer"))
    for pair in plan.pairs:
        states = {h: vrrp_state(lab, h, pair) for h in pair.hosts}
        if sorted(states.values()) != sorted(["MASTER"] + ["BACKUP"] * (len(pair.hosts) - 1)):
            found.append(f"pair {pair.name}: " + ", ".join(f"{h} {s}" for h, s in states.items()))
    for lb in plan.lb_hosts:
        servers = haproxy_servers(lab, lb)
        down = sorted(b.name for b in plan.backends
                      if not (servers.get(b.name, "") == "UP" if strict
                              else servers.get(b.name, "").startswith("UP")))
        if down:
            found.append(f"{lb}: {', '.join(down)} not UP")
    online = bricks_online(lab, plan)
    if len(online) != len(plan.storage_hosts) or not all(online.values()):
        found.append(f"volume {plan.volume}: {sum(online.values())}/{len(plan.storage_hosts)} "
                     "bricks online")
    else:
        pending = heal_pending(lab, plan)
        if pending != 0:
            found.append(f"volume {plan.volume}: "
                         + ("heal state unknown" if pending is None else f"{pending} entries to heal"))
    return found


def wait_converged(lab, plan, timeout=90.0, interval=0.5, strict=False):
    """Poll until nothing is left to converge; returns (seconds, last problems)."""
    started = time.monotonic()
    left = problems(lab, plan, strict)
    while left and time.monotonic() - started < timeout:
        time.sleep(interval)
        left = problems(lab, plan, strict)
    return time.monotonic() - started, left


def wait_steady(lab, plan, timeout=90.0, settle=2.0):
    """Like wait_converged, and still converged `settle` seconds later: a server
    booted a moment ago may not have failed HAProxy's checks yet (fall 2 at 500 ms),
    and it must be seen UP after that. Returns (seconds, last problems)."""
    started = time.monotonic()
    while True:
        _, left = wait_converged(lab, plan, timeout=max(timeout - (time.monotonic() - started), 0),
                                 strict=True)
        if left:
            return time.monotonic() - started, left
        time.sleep(settle)
        left = problems(lab, plan, strict=True)
        if not left or time.monotonic() - started > timeout:
            return time.monotonic() - started, left


def database_primary(lab, plan, avoid=()):
    """The database host Patroni calls the running leader, asked of the other members.

    A member being faulted is left out (`avoid`): a hung or cut host would
    only make the question wait.
    """
    from quizstack.stack import database_members

    running = {h for h in plan.database_hosts if h not in avoid and _root(lab, h)}
    members = database_members(lab, plan, running)
    leaders = [m["name"] for m in members if m.get("role") == "leader" and m.get("state") == "running"]
    return leaders[0] if len(leaders) == 1 else None
