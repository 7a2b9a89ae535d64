"""The built-in experiments: which fault, on which host, and what to watch for.

An experiment names a fault kind and a way to choose its target from the
running service (the active load balancer, not a fixed name, so `lb-kill`
always hits the member that holds the address), and a detector: the reading
(watch.py) that shows the service noticed. Pure data and small functions of
(plan, readings); the runner does the rest.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from quizstack.chaos import watch
from quizstack.errors import QuizstackError


class ExperimentError(QuizstackError):
    """An experiment that cannot run on this lab (wrong scenario, unknown name)."""


@dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    kind: str                                  # the fault: kill, cut, freeze, slow, stop
    target: Callable                           # target(lab, plan) -> host name
    # detector(lab, plan, host, since) -> None until noticed, then (what was seen,
    # its wall-clock time if the component logged one, else None: now)
    detector: Callable
    params: dict = field(default_factory=dict)
    # fence(lab, plan, host, since) -> like detector: the faulted host shown to
    # have stopped doing what it must not do any more (a cut primary's writes)
    fence: Callable | None = None


def _web(lab, plan):
    # The middle server: not the first one a check or a scan happens to start with.
    return plan.web_hosts[len(plan.web_hosts) // 2]


def _storage(lab, plan):
    names = [name for name, _ in plan.storage_hosts]
    return names[len(names) // 2]


def _active(role):
    def choose(lab, plan):
        hosts = plan.lb_hosts if role == "loadbalancer" else plan.fw_hosts
        pair = plan.pair_of(hosts[0])
        if pair is None:
            raise ExperimentError(f"there is one {role} ({hosts[0]}): its death stops the service "
                                  "by design; run this on a scenario with a pair (complete)")
        master = watch.vrrp_master(lab, pair)
        if master is None:
            raise ExperimentError(f"pair {pair.name} has no single master now; wait or heal first")
        return master
    return choose


def server_down(lab, plan, host, since):
    """HAProxy on the active balancer no longer sends to the server."""
    active = watch.active_balancer(lab, plan)
    if active is None:
        return None
    state = watch.haproxy_servers(lab, active).get(host, "")
    return (f"HAProxy on {active}: {host} {state}", None) if state and not state.startswith("UP") else None


def took_over(lab, plan, host, since):
    """Another member of the pair holds the floating addresses."""
    pair = plan.pair_of(host)
    master = watch.vrrp_master(lab, pair)
    if master and master != host:
        held = ", ".join(c.split("/")[0] for _, c in pair.addresses)
        return f"VRRP: {master} MASTER, holds {held}", None
    return None


def _primary(lab, plan):
    if not plan.replicated:
        raise ExperimentError(f"there is one database ({plan.database_host}): its loss stops "
                              "every write by design; run this on a replicated database (complete)")
    primary = watch.database_primary(lab, plan)
    if primary is None:
        raise ExperimentError("the database has no single running primary now; wait or heal first")
    return primary


def promoted(lab, plan, host, since):
    """Another database host is the running primary."""
    leader = watch.database_primary(lab, plan, avoid=(host,))
    return (f"Patroni: {leader} promoted", None) if leader and leader != host else None


def takes_no_writes(lab, plan, host, since):
    """The cut-off primary stepped down: its PostgreSQL is a standby or stopped.

    Asked inside the host itself (the lab reaches a cut host; nobody else can).
    """
    try:
        done = lab.run(host, ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-c",
                              "select pg_is_in_recovery()"], check=False, timeout=5)
    except QuizstackError:
        return None
    if done.returncode != 0 or done.stdout.strip() == "t":
        state = "a standby" if done.stdout.strip() == "t" else "stopped"
        return f"{host}'s PostgreSQL is {state}, it takes no writes", None
    return None


def brick_given_up(lab, plan, host, since):
    """The app servers' volume client gave the node's brick up (writes go on without it)."""
    seen = watch.volume_client_saw(lab, plan, host, since)
    return (f"GlusterFS client on {plan.web_hosts[0]}: {host}'s brick given up", seen) if seen else None


EXPERIMENTS = {e.name: e for e in (
    Experiment("web-kill", "an app server's power cut (processes killed, links down)",
               "kill", _web, server_down),
    Experiment("web-stop", "an app server's gunicorn stopped (the host answers, refusing)",
               "stop", _web, server_down, {"service": "quiz"}),
    Experiment("web-freeze", "an app server hung: every process stopped, the kernel still answers",
               "freeze", _web, server_down),
    Experiment("storage-kill", "a storage node's power cut", "kill", _storage, brick_given_up),
    Experiment("lb-kill", "the active load balancer's power cut", "kill",
               _active("loadbalancer"), took_over),
    Experiment("fw-kill", "the active firewall's power cut", "kill", _active("firewall"), took_over),
    Experiment("db-kill", "the primary database's power cut", "kill", _primary, promoted),
    Experiment("db-cut", "the primary database cut off from everybody (a partition)", "cut",
               _primary, promoted, fence=takes_no_writes),
    Experiment("db-freeze", "the primary database hung", "freeze", _primary, promoted),
    Experiment("db-switchover", "a planned switchover to the standby (quizstack db switchover)",
               "switchover", _primary, promoted),
)}


def get(name):
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ExperimentError(f"no experiment {name!r} (experiments: "
                              f"{', '.join(EXPERIMENTS)}, random)") from None


def random_candidates(plan, spare=()):
    """The hosts a random drill kills, and those it leaves alone with the reason.

    Every host but the clients, except a host that is alone in its role: its
    death stops the service by design (the database until it has a replica, a
    firewall or balancer without its pair), which a drill need not show again.
    """
    single = {} if plan.replicated else {plan.database_host: "the only database"}
    if not plan.pair_of(plan.lb_hosts[0]):
        single[plan.lb_hosts[0]] = "the only load balancer"
    if not plan.pair_of(plan.fw_hosts[0]):
        single[plan.fw_hosts[0]] = "the only firewall"
    names = [h for h in plan.lab_addresses
             if h not in plan.clients and h not in {p.name for p in plan.pairs}]
    unknown = [h for h in spare if h not in names]
    if unknown:
        raise ExperimentError(f"cannot spare {', '.join(unknown)}: not a host the drill would "
                              f"kill (hosts: {', '.join(names)})")
    single.update({h: "spared on request" for h in spare})
    return [h for h in names if h not in single], single


def random_schedule(plan, minutes, seed, hold=(5.0, 15.0), pause=(5.0, 10.0), spare=()):
    """Kill and heal one host at a time, at random but reproducibly by seed.

    Returns [(offset seconds from the start, host, hold seconds)]: a host is
    never chosen twice in a row, and the next fault waits until the service
    has converged and a pause has passed (the runner enforces the convergence;
    the offsets here are the earliest start of each fault).
    """
    rng = random.Random(seed)
    candidates, _ = random_candidates(plan, spare)
    schedule, at, last = [], rng.uniform(*pause), None
    while at < minutes * 60:
        host = rng.choice([h for h in candidates if h != last])
        held = rng.uniform(*hold)
        schedule.append((round(at, 1), host, round(held, 1)))
        at += held + rng.uniform(*pause)
        last = host
    return schedule
