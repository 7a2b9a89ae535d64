"""The shape shared by every role: phases of operations on a set of hosts.

A role is a list of phases. A phase names the hosts it runs on, a function
that, called once per host with pyinfra's context set, adds that host's
operations, and the phases it needs done first (the volume exists before a
server mounts it; the database answers before the first migration). Phases
that need nothing of each other run side by side.
"""

from dataclasses import dataclass, field
from typing import Callable

PROBE_DIR = "/var/lib/quizstack/probes"


@dataclass(frozen=True)
class Phase:
    role: str
    name: str
    hosts: tuple
    add_ops: Callable       # add_ops(plan, context) with pyinfra's host context set
    needs: tuple = ()       # keys ("role: name") of the phases that must be done first

    @property
    def key(self):
        return f"{self.role}: {self.name}"


@dataclass(frozen=True)
class Context:
    """What the roles need besides the plan."""

    secrets: dict
    venv: str               # the Python environment holding quizstack and QUIZ, on every app server
    changes: dict = field(default_factory=dict)   # (host, what) -> operations a later phase reacts to
    keys: object = None     # sshkeys.Keys: the operators', ges's and the hosts' SSH keys
    release: object = None  # ship.Release for servers that do not share our files (None: this checkout's)

    @property
    def app_paths(self):
        """Where the app servers read code from: the environment and QUIZ's package."""
        import importlib.util
        import os

        spec = importlib.util.find_spec("quiz")
        code = os.path.dirname(spec.origin) if spec and spec.origin else None
        return tuple(p for p in (self.venv, code) if p)


def scenario_host():
    """The scenario's name of the host pyinfra is working on."""
    from pyinfra import host

    return host.data.get("scenario_host") or host.name.rsplit("/", 1)[-1]


def install_probe(name):
    """Upload a probe script; returns the argv prefix that runs it."""
    from quizstack.deploy import ops, probes

    ops.config_file(f"{PROBE_DIR}/{name}.py", probes.source(name), name=f"probe {name}")
    return f"python3 {PROBE_DIR}/{name}.py"
