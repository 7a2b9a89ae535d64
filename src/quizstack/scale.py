"""More or fewer app servers in a running lab, while it serves.

`quizstack scale web=N`:

- out (N larger): the new servers are written into the lab's scenario
  (topology/scale.py), created and booted in the running lab (their
  namespaces, links on the running bridges, addresses, routes), and only
  what they need is deployed: their own roles, the load balancers' new
  configuration (a seamless reload: HAProxy's old workers finish what they
  hold), ges's view of the hosts and Nagios's. The new server takes requests
  once HAProxy's health checks see it.
- in (N smaller): the leaving servers are drained first — their drain file
  put there (their health page says "draining", and a load agent says
  `drain`, never `ready`, which would undo the balancers' drain), set to
  DRAIN on every load balancer (no new requests; those in flight finish) and
  waited for until none holds a session —, then the balancers, ges and Nagios are
  deployed without them, and only then are they powered off and removed.

Either way the scenario the lab runs is updated, so status, check, stop and
start, and the next `up` know the new count.
"""

import time

from quizstack import deploy
from quizstack.deploy.plan import build_plan
from quizstack.deploy.web import DRAIN
from quizstack.errors import QuizstackError
from quizstack.topology import parse_scenario
from quizstack.topology.scale import scaled_text

DRAIN_TIMEOUT = 30.0

# Runs on a load balancer: one command on HAProxy's admin socket, its answer printed.
_ADMIN = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.settimeout(2)\n"
    "s.connect('/run/haproxy/admin.sock')\n"
    "s.sendall(sys.argv[1].encode() + b'\\n')\n"
    "data = b''\n"
    "while True:\n"
    "    chunk = s.recv(65536)\n"
    "    if not chunk:\n"
    "        break\n"
    "    data += chunk\n"
    "sys.stdout.write(data.decode())\n"
)


def haproxy_admin(lab, lb, command, timeout=10):
    return lab.run(lb, ["python3", "-c", _ADMIN, command], timeout=timeout, check=False).stdout


def sessions(lab, lb, servers):
    """Current sessions of each server on one balancer, over every backend that has it."""
    found = {s: 0 for s in servers}
    for line in haproxy_admin(lab, lb, "show stat").splitlines():
        fields = line.split(",")
        if len(fields) > 4 and fields[1] in found:
            try:
                found[fields[1]] += int(fields[4] or 0)
            except ValueError:
                pass
    return found


def drain(lab, plan, servers, progress, timeout=DRAIN_TIMEOUT):
    """No new request to `servers` on any balancer; wait until they hold none."""
    running = {h["name"] for h in lab.status()["hosts"] if h["running"]}
    balancers = [lb for lb in plan.lb_hosts if lb in running]
    for server in servers:
        if server in running:
            lab.run(server, ["sh", "-c", DRAIN])
    for lb in balancers:
        for server in servers:
            for backend in ("quiz_servers", "quiz_watch"):
                haproxy_admin(lab, lb, f"set server {backend}/{server} state drain")
    progress(f"scale: {', '.join(servers)} draining on {', '.join(balancers)}")
    deadline = time.monotonic() + timeout
    while True:
        busy = {lb: {s: n for s, n in sessions(lab, lb, servers).items() if n}
                for lb in balancers}
        busy = {lb: found for lb, found in busy.items() if found}
        if not busy:
            return
        if time.monotonic() > deadline:
            progress(f"scale: still busy after {timeout:.0f} s ({busy}); going on")
            return
        time.sleep(0.2)


def scale(lab, role, count, progress=None):
    """Bring the lab to `count` hosts of `role` ("web"); returns (added, removed, seconds)."""
    progress = progress or (lambda message: None)
    if role != "web":
        raise QuizstackError(f"scale: only the app servers scale (web=N), not {role!r}")
    topology = lab.topology
    new_text, added, removed = scaled_text(lab.scenario_text, topology, role, count,
                                           source=str(topology.source))
    if not added and not removed:
        progress(f"scale: already {count} {role} server(s)")
        return [], [], 0.0
    return apply(lab, new_text, added, removed, progress)


def apply(lab, new_text, added, removed, progress):
    """Give the running lab `new_text`, which adds the app servers `added` and
    removes `removed` and changes nothing else."""
    from quizstack import stack
    from quizstack.deploy import verify

    started = time.monotonic()
    topology = lab.topology
    new_topology = parse_scenario(new_text, source=str(topology.source),
                                  default_name=topology.name)
    new_plan = build_plan(new_topology)       # a scenario the service can run, or one line
    old_plan = build_plan(topology)
    m = new_plan.management
    around = set(new_plan.lb_hosts) | ({m.ges, m.nagios} - {""} if m else set())
    verify.forget(lab.state_dir)
    if added:
        progress(f"scale: adding {', '.join(added)}")
        lab.rescale(new_text, progress=progress)
        stack.deploy_lab(lab, progress, only=set(added) | around)
    if removed:
        drain(lab, old_plan, removed, progress)
        stack.deploy_lab(lab, progress, only=around, topology=new_topology)
        lab.rescale(new_text, progress=progress)
    count = len(new_topology.with_role("web"))
    seconds = time.monotonic() - started
    progress(f"scale: {count} web server(s) ({seconds:.1f} s)")
    return added, removed, seconds


def converge(lab, new_text, progress=None):
    """`up FILE` on a running lab whose scenario differs from FILE only by app
    servers added or removed: scaled to it while serving. False when FILE
    differs in anything else (the caller refuses it)."""
    progress = progress or (lambda message: None)
    topology = lab.topology
    new = parse_scenario(new_text, source="<new scenario>", default_name=topology.name)

    def rest(t):
        return {n: h for n, h in t.hosts.items() if "web" not in h.roles}

    if (rest(topology) != rest(new) or topology.networks != new.networks
            or topology.floating != new.floating or topology.settings != new.settings):
        return False
    kept = {n for n, h in topology.hosts.items() if "web" in h.roles and new.hosts.get(n) == h}
    added = [n for n in new.hosts if n not in topology.hosts]
    removed = [n for n in topology.hosts if n not in new.hosts]
    changed = [n for n in topology.hosts if n in new.hosts and n not in kept and n not in rest(new)]
    if changed:
        return False      # a server whose addresses changed: not a scale
    if added or removed:
        apply(lab, new_text, added, removed, progress)
    return True


def under_load(lab, count, settings=None, progress=None, after=5.0):
    """`scale web=count` while the chaos load runs on every client; the
    experiment's result (chaos/runner.py: failed requests, stalls, every
    acknowledged write verified) plus, for servers added, the seconds from
    the command to each one's first answer through the service."""
    from quizstack.chaos import runner

    progress = progress or (lambda message: None)
    settings = settings or runner.Settings(warmup=3.0, after=after)
    result, (added, removed, seconds), began, chaos = runner.during(
        lab, f"scale-web{count}", lambda: scale(lab, "web", count, progress=progress),
        settings, progress, label=f"scale web={count}")
    result.update({"added": added, "removed": removed})
    requests, _ = chaos.records()
    first = {}
    for record in requests:
        server = record.get("server")
        if server in added and record.get("ok"):
            first[server] = min(first.get(server, record["t"]), record["t"])
    result["serving_after"] = {s: round(t - began, 2) for s, t in first.items()}
    result["seconds"] = round(seconds, 2) if seconds is not None else None
    return result


__all__ = ["scale", "apply", "converge", "drain", "under_load", "deploy"]
