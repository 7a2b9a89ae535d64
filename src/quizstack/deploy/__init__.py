"""Deployment: the roles, in order, as pyinfra operations on lab or real hosts.

Order is database → storage → app servers → load balancer → firewall last, so
the service is closed to clients until it is complete. Each role is a list of
phases (see roles.py); each phase is one pyinfra run on its hosts, in
parallel, and a phase starts only when the one before it succeeded everywhere.

Hosts are reached through a pyinfra connector: `@lab/<lab>/<host>` for lab
hosts, or any pyinfra inventory name (an SSH address) for real ones. The
result says which operations changed something, so a second deployment can
say "no change".
"""

import logging
import time
from dataclasses import dataclass, field, replace

from quizstack.deploy import access, db, fw, guard, install, lb, logs, monitoring, ops, storage, web
from quizstack.deploy.plan import build_plan
from quizstack.deploy.roles import Context
from quizstack.errors import DeployError

# access last: a first deployment reaches real hosts directly over SSH, and this
# role ends that (from then on only ges's key opens them). The guard closes the
# back end once it is up, before the app servers use it (guard.py).
ROLES = (db, storage, guard, web, lb, fw, logs, monitoring, access)


@dataclass
class PhaseResult:
    role: str
    name: str
    hosts: tuple
    changed: list = field(default_factory=list)   # (host, operation name)
    seconds: float = 0.0


@dataclass
class DeployResult:
    phases: list = field(default_factory=list)
    verified: str = ""      # set when a lab's deployment was verified instead of run (verify.py)

    @property
    def changed(self):
        return [c for p in self.phases for c in p.changed]

    @property
    def seconds(self):
        return sum(p.seconds for p in self.phases)


def lab_targets(lab):
    """Targets and host data for a lab's hosts, reached through the lab connector."""
    targets = {name: f"@lab/{lab.name}/{name}" for name in lab.topology.hosts}
    data = {name: {"lab_state_root": str(lab.state_root)} for name in lab.topology.hosts}
    return targets, data


def deploy(topology, targets, secrets, venv, progress=None, target_data=None, keys=None,
           only=None, release=None):
    """Bring every role to the wanted state; return what changed.

    `targets` maps each scenario host to a pyinfra inventory name: `@lab/...`
    for lab hosts, an address or name for pyinfra's SSH connector. Optional
    `target_data` maps a host to pyinfra host data (ssh_user, ssh_key, ...).
    `keys` (sshkeys.Keys) are the SSH keys a scenario with a management host
    needs. `release` (ship.Release) is what servers that do not share our
    files get; by default this checkout's.
    """
    plan = build_plan(topology)
    if plan.management and plan.management.ges and keys is None:
        raise DeployError("the scenario has a management host: its SSH keys are needed")
    context = Context(secrets=secrets, venv=venv, keys=keys, release=release)
    ops.MANAGED.clear()
    phases = [phase for role in ROLES for phase in role.phases(plan, context)]
    if only is not None:
        phases = restrict(phases, set(only), whole=(guard.ROLE,))
    # First, on every host: what the phases after it need installed (checked
    # on this machine for the lab's namespace hosts, which share its /usr).
    shared = {h for h, target in targets.items()
              if str(target).startswith("@lab/") and h in topology.hosts and not topology.hosts[h].system}
    phases = [p for p in [install.phase(phases, shared)] if p] + phases
    needed = {h for phase in phases for h in phase.hosts}
    missing = [h for h in topology.hosts if h in needed and h not in targets]
    if missing:
        raise DeployError(f"no way to reach host(s) {', '.join(missing)}")
    result = DeployResult()
    for stage in schedule(phases):
        if progress:
            for phase in stage:
                progress(f"{phase.role}: {phase.name} on {', '.join(phase.hosts)}")
        done = _run_stage(stage, plan, context, targets, target_data or {})
        result.phases.extend(done)
        if progress:
            for phase in done:
                what = f"{len(phase.changed)} change(s)" if phase.changed else "no change"
                progress(f"{phase.role}: {phase.name}: {what} ({phase.seconds:.1f} s)")
    return result


def restrict(phases, hosts, whole=()):
    """The phases on some hosts only (a scale): each phase keeps its hosts among
    them; a phase left with none is dropped, and what needed it needs what it
    needed instead (the order stays as it was).

    The phases of the roles in `whole` (the guard, which names every app
    server) keep all their hosts and come first, needing nothing: what a new
    server does next (mount the volume, route to the database) is then let in."""
    first = [replace(p, needs=()) for p in phases if p.role in whole]
    phases = [p for p in phases if p.role not in whole]
    needs = {p.key: p.needs for p in phases}
    kept = [replace(p, hosts=tuple(h for h in p.hosts if h in hosts)) for p in phases]
    kept = [p for p in kept if p.hosts]
    keys = {p.key for p in kept}

    def resolved(names):
        found = []
        for name in names:
            for key in ([name] if name in keys else resolved(needs.get(name, ()))):
                if key not in found:
                    found.append(key)
        return found

    before = tuple(p.key for p in first)
    return first + [replace(p, needs=tuple(resolved(p.needs)) + before) for p in kept]


def schedule(phases):
    """Group phases into stages: each after what it needs, hosts disjoint within a stage.

    Phases of independent roles (the database and the storage daemons, say)
    thus run side by side, while a phase never starts before those it needs.
    """
    stage_of, stages = {}, []
    for phase in phases:
        unknown = [n for n in phase.needs if n not in stage_of]
        if unknown:
            raise DeployError(f"phase {phase.key} needs {', '.join(unknown)}, which comes later")
        index = max((stage_of[n] + 1 for n in phase.needs), default=0)
        while index < len(stages) and any(set(phase.hosts) & set(p.hosts) for p in stages[index]):
            index += 1
        if index == len(stages):
            stages.append([])
        stages[index].append(phase)
        stage_of[phase.key] = index
    return stages


def _run_stage(stage, plan, context, targets, target_data):
    """One stage on its hosts; the connections are closed whatever happens.

    Left open, every SSH connection keeps a paramiko thread (and, through a
    jump, a ProxyCommand process) polling for the life of the process: after
    a few deployments over SSH, a hundred such threads starved the rest of it.
    """
    from pyinfra.api.connect import disconnect_all

    holder = {}
    try:
        return _run_stage_connected(stage, plan, context, targets, target_data, holder)
    finally:
        if "state" in holder:
            _disconnect(holder["state"], disconnect_all)


def _disconnect(state, disconnect_all):
    try:
        disconnect_all(state)
    except Exception:       # noqa: BLE001 - closing is best effort; the result stands
        pass
    # pyinfra's SSH connector forgets its file transfers on disconnect but
    # keeps the client: closed here, with its transport and its ProxyCommand.
    transports = []
    for host in state.inventory:
        client = getattr(getattr(host, "connector", None), "client", None)
        if client is not None:
            try:
                transports.append(client.get_transport())
                client.close()
            except Exception:   # noqa: BLE001
                pass
    # Each transport's thread ends within moments of its close.
    for transport in transports:
        if transport is not None:
            transport.join(timeout=2)


def _run_stage_connected(stage, plan, context, targets, target_data, holder):
    # pyinfra is imported here: the pure parts (plan, render) stay importable without it.
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops
    from pyinfra.context import ctx_host, ctx_state

    # pyinfra would log each host's command output itself; failures reach the
    # caller as one DeployError instead (the command line is the one place that prints).
    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
    started = time.monotonic()
    phase_of = {h: phase for phase in stage for h in phase.hosts}
    names = [(targets[h], dict(target_data.get(h, {}), scenario_host=h)) for h in phase_of]
    inventory = Inventory((names, {}))
    state = State(inventory=inventory, config=Config(), check_for_changes=False)
    holder["state"] = state
    where = " + ".join(phase.key for phase in stage)
    try:
        connect_all(state)
    except PyinfraError as exc:
        raise DeployError(f"{where}: cannot reach the hosts: {exc}")
    if state.failed_hosts:
        raise DeployError(f"{where}: cannot reach {_host_names(state.failed_hosts)}")

    metas = {}
    for host in inventory:
        phase = phase_of[host.data.get("scenario_host")]
        with ctx_state.use(state), ctx_host.use(host):
            try:
                phase.add_ops(plan, context)
            except (ValueError, PyinfraError) as exc:
                raise DeployError(f"{phase.key} on {host.data.get('scenario_host')}: {exc}")
            metas[host] = list(state.ops.get(host, {}))

    try:
        run_ops(state)
    except PyinfraError:
        pass  # the failed operation is found and reported below
    seconds = time.monotonic() - started
    results = {phase.key: PhaseResult(phase.role, phase.name, phase.hosts, seconds=seconds)
               for phase in stage}
    for host in inventory:
        scenario_host = host.data.get("scenario_host")
        phase = phase_of[scenario_host]
        for op_hash in metas[host]:
            data = state.ops[host][op_hash]
            op = data.operation_meta
            label = data.global_arguments.get("name") or ", ".join(
                sorted(state.get_op_meta(op_hash).names))
            if not op.is_complete():
                raise DeployError(f"{phase.key} on {scenario_host}: did not run `{label}` "
                                  "(an earlier operation failed)")
            if op.did_error():
                output = (op.stderr_lines or op.stdout_lines)[-3:]
                detail = (": " + " | ".join(line.strip() for line in output)) if output else ""
                raise DeployError(f"{phase.key} on {scenario_host}: `{label}` failed{detail}")
            if op.did_change() and not ops.is_wait(label):
                results[phase.key].changed.append((scenario_host, label))
    return [results[phase.key] for phase in stage]


def _host_names(hosts):
    return ", ".join(sorted(h.data.get("scenario_host", h.name) for h in hosts))


__all__ = ["deploy", "lab_targets", "build_plan", "DeployResult"]
