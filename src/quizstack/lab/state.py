"""The lab's state file: what the lab created, recorded before it is created.

state.json lives in the lab's state directory and is replaced atomically
(write, then rename), so a kill -9 at any moment leaves either the previous
or the next version, never half of one. Each resource is appended to
`created` before the command that creates it runs: after a crash `up` knows
what may exist and finishes it, and `destroy` removes exactly those things,
in reverse order, tolerating ones that never came to exist.

Entries of `created`: {"kind": "netns", "name": ...}, {"kind": "init", "host": ...},
{"kind": "forward"}, {"kind": "system-cgroup", "path", "machine"} (a full
system's keeper cgroup, systemhosts.py) and {"kind": "cgroup", ...}: a freeze
or slow fault's cgroup, undone when the fault is healed (faults.py,
`cgroup_entry`). A cgroup record is one of
  v1: {"controller": "freezer"|"cpu", "path", "host", "fault"}, the cgroup the
      fault made in that controller's hierarchy (records of earlier versions
      lack host and fault; the path names them);
  v2: {"controller": "v2", "path", "host", "fault", "home"}, a namespace
      host's cgroup in the v2 hierarchy, shared by its freeze and slow, whose
      processes go back to `home` when the last of them is healed; or
      {"controller": "v2", "path", "host", "fault", "in_place": true}, a
      full system's keeper cgroup, frozen or slowed where it is and never
      removed by a heal.

`faults` lists the faults injected and not yet healed (see faults.py), each
recorded before it is applied.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

VERSION = 1


def new_state(lab: str, scenario: str, source: str) -> dict:
    return {
        "version": VERSION,
        "lab": lab,
        "scenario": scenario,
        "source": source,
        "created": [],
        "network": None,      # "done" once bridges, links, addresses and routes exist
        "forward": None,      # {"port", "client", "target", "pid", "start"} while wanted
        "faults": [],         # active faults: {"kind", "host", ..., "began", "t"}
    }


def add_created(state: dict, entry: dict) -> bool:
    """Append an entry unless already there; True if the state changed."""
    if entry in state["created"]:
        return False
    state["created"].append(entry)
    return True


def remove_created(state: dict, entry: dict) -> bool:
    """Drop an entry once what it records is gone; True if the state changed."""
    if entry not in state["created"]:
        return False
    state["created"].remove(entry)
    return True


def created(state: dict, kind: str) -> list[dict]:
    return [e for e in state["created"] if e["kind"] == kind]


def teardown_order(state: dict) -> list[dict]:
    """Created entries in the order destroy removes them: processes first
    (forward, then inits), then cgroups (empty once the processes are gone),
    then namespaces, each group in reverse order."""
    entries = list(reversed(state["created"]))
    rank = {"forward": 0, "init": 1, "cgroup": 2, "netns": 3}
    return sorted(entries, key=lambda e: rank.get(e["kind"], 4))


def load(path: Path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def save(path: Path, state: dict):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, path)
