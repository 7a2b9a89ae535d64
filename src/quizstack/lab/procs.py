"""Processes of the lab: identify them exactly, signal them, wait for them.

A PID alone can be reused by the kernel, so a lab process is recorded as
(pid, start time) and only signalled while both still match. Processes are
found by the namespaces the lab created (a process whose network namespace is
one of the lab's belongs to the lab), never by name.
"""

from __future__ import annotations

import os
import signal
import time


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] == b"Z":
        return None          # a zombie is dead, only not yet reaped
    return int(fields[19])


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(data[data.rindex(b")") + 2:].split()[1])


def alive(record: dict | None) -> bool:
    """True if the recorded process (pid + start time) still runs."""
    if not record:
        return False
    return start_time(record["pid"]) == record["start"]


def record(pid: int) -> dict | None:
    start = start_time(pid)
    return None if start is None else {"pid": pid, "start": start}


def signal_record(rec: dict | None, sig: int) -> bool:
    """Send a signal to a recorded process if it is still that process."""
    if not alive(rec):
        return False
    try:
        os.kill(rec["pid"], sig)
    except ProcessLookupError:
        return False
    return True


def wait_gone(records: list[dict], deadline: float) -> list[dict]:
    """Poll until every recorded process is gone or the deadline passes.

    Returns those still alive (empty when all are gone).
    """
    left = [r for r in records if alive(r)]
    delay = 0.002
    while left and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
        left = [r for r in left if alive(r)]
    return left


def is_namespace_init(pid: int) -> bool:
    """True if the process is PID 1 of a PID namespace below the machine's."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    return len(ids) > 1 and ids[-1] == "1"
    except (FileNotFoundError, ProcessLookupError):
        pass
    return False


def netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def processes_in_netns(inodes: set[int]) -> list[dict]:
    """Every process whose network namespace is one of the given inodes."""
    found = []
    if not inodes:
        return found
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        try:
            ino = os.stat(f"/proc/{pid}/ns/net").st_ino
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if ino in inodes:
            rec = record(pid)
            if rec:
                found.append(rec)
    return found


def kill_all(records: list[dict], timeout: float = 5.0) -> list[dict]:
    """SIGKILL recorded processes and wait until they are gone."""
    for rec in records:
        signal_record(rec, signal.SIGKILL)
    return wait_gone(records, time.monotonic() + timeout)
