"""What the roles would do on every host, found by running them dry.

The report must not describe the deployment a second time by hand: it asks
the roles themselves. Each phase's `add_ops(plan, context)` runs here with
pyinfra's host context set to a stand-in host and every pyinfra operation of
the deployment's modules replaced by a recorder, so nothing is executed and
nothing is connected to. What the roles hand to the operations is kept: the
files with their rendered content, mode and owner, the services under the
host's init, the readiness waits and the other steps, in the order the role
adds them.

The stand-in is a real Debian host under systemd (what `quizstack deploy`
meets), answering the few facts the roles read while adding operations with
what a fresh host would say. Secrets and keys are placeholders, so whatever
the report prints is safe to publish.
"""

import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from unittest import mock

from quizstack.deploy import ROLES, schedule
from quizstack.deploy.roles import Context
from quizstack.deploy.secrets import DERIVED, FIELDS

SECRET = "<secret>"
VENV = "/opt/quizstack/venv"          # `quizstack deploy --venv`: where quizstack runs on the app servers
POSTGRES_VERSION = "15"               # Debian 12's PostgreSQL


@dataclass
class FileWritten:
    path: str
    content: str
    mode: str
    owner: str
    label: str
    checked_by: str = ""              # the service's own checker, run before the file goes live


@dataclass
class Step:
    kind: str                         # config_file, service, wait_until, directory, or a role's own operation
    label: str
    detail: str = ""


@dataclass
class HostWork:
    """What one phase does on one host."""

    host: str
    files: list = field(default_factory=list)
    services: list = field(default_factory=list)     # (name, systemd unit, command)
    steps: list = field(default_factory=list)


@dataclass
class PhaseWork:
    role: str
    name: str
    hosts: tuple
    needs: tuple
    stage: int
    work: dict = field(default_factory=dict)          # host -> HostWork

    @property
    def key(self):
        return f"{self.role}: {self.name}"


class _Pair:
    """A key pair stand-in: placeholders, never a key."""

    def __init__(self, algorithm, what):
        self.public = f"{algorithm} <{what}-public-key>"
        self.private = f"<{what}-private-key>\n"
        self.path = f"<{what}-private-key-file>"


class _Keys:
    directory = "<operators-ssh-folder>"
    known_hosts = "<operators-ssh-folder>/known_hosts"

    def __init__(self, hosts):
        self.operator = _Pair("ssh-rsa", "operators")
        self.management = _Pair("ssh-ed25519", "ges-management")
        self.hosts = {h: _Pair("ssh-ed25519", f"{h}-host") for h in hosts}


@dataclass(frozen=True)
class _Context(Context):
    @property
    def app_paths(self):
        # Not this machine's checkout: the environment a real deployment names.
        return (self.venv,)


def masked_context(topology):
    from quizstack.deploy import ship
    from quizstack import wheels

    # The release a deployment ships: named, not built (no pip run for a report).
    requirements = tuple(wheels.pinned_requirements())
    release = ship.Release(id="RELEASE", requirements=requirements,
                           wheels=("quizstack.whl",) + tuple(f"{r}.whl" for r in requirements))
    return _Context(secrets={k: SECRET for k in FIELDS + tuple(DERIVED)}, venv=VENV, keys=_Keys(topology.hosts),
                    release=release)


class _Result:
    """What a recorded operation returns: it changed nothing."""

    def did_change(self):
        return False

    def did_succeed(self):
        return True


class _FakeHost:
    """pyinfra's host, as a fresh Debian host under systemd answers the roles' facts."""

    def __init__(self, name):
        self.name = name
        self.data = {"scenario_host": name}

    def get_fact(self, fact, **kwargs):
        from quizstack.deploy import ops

        if fact is ops.InitSystem:
            return "systemd"
        if fact is ops.Lines and "/usr/lib/postgresql" in kwargs.get("command", ""):
            return [POSTGRES_VERSION]
        default = getattr(fact, "default", None)
        return default() if callable(default) else None


def _operations():
    """Every pyinfra operation defined or imported in the deployment's modules."""
    found = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("quizstack.deploy") or module is None:
            continue
        for attr, value in vars(module).items():
            if callable(value) and hasattr(value, "_inner") and hasattr(value, "is_idempotent"):
                found.append((module, attr, value))
    return found


@contextmanager
def _recording(sink):
    def recorder(kind):
        def record(*args, **kwargs):
            sink.append((kind, args, kwargs))
            return _Result()
        return record

    with ExitStack() as stack:
        for module, attr, value in _operations():
            stack.enter_context(mock.patch.object(module, attr, recorder(value.__name__)))
        yield


def _host_work(host, calls):
    work = HostWork(host)
    for kind, args, kwargs in calls:
        label = kwargs.get("name", kind)
        if kind == "config_file":
            params = dict(zip(("path", "content", "mode", "user", "group", "check"), args))
            params.update({k: v for k, v in kwargs.items() if k != "name"})
            check = params.get("check")
            work.files.append(FileWritten(
                path=params["path"], content=params["content"], mode=str(params.get("mode", "644")),
                owner=f"{params.get('user', 'root')}:{params.get('group', 'root')}", label=label,
                checked_by=" ".join(check).replace("{}", "FILE") if check else ""))
        elif kind == "service":
            name, command = args[0], args[1] if len(args) > 1 else kwargs.get("command", "")
            work.services.append((name, kwargs.get("unit") or name, command))
            work.steps.append(Step(kind, label, f"unit {kwargs.get('unit') or name}"))
        elif kind == "wait_until":
            what = args[1] if len(args) > 1 else kwargs.get("what", "")
            work.steps.append(Step(kind, label, what))
        else:
            work.steps.append(Step(kind, label))
    return work


def trace(plan, topology):
    """Every phase in deployment order, with what it does on each of its hosts."""
    from pyinfra.context import ctx_host

    context = masked_context(topology)
    phases = [phase for role in ROLES for phase in role.phases(plan, context)]
    stage_of = {p.key: i for i, stage in enumerate(schedule(phases)) for p in stage}
    found = []
    for phase in phases:
        done = PhaseWork(phase.role, phase.name, phase.hosts, phase.needs, stage_of[phase.key])
        for host in phase.hosts:
            calls = []
            with _recording(calls), ctx_host.use(_FakeHost(host)):
                phase.add_ops(plan, context)
            done.work[host] = _host_work(host, calls)
        found.append(done)
    return sorted(found, key=lambda p: p.stage)
