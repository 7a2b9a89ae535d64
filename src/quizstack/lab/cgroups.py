"""Cgroup layout facts and the few cgroup operations the faults need, in one home.

A Linux machine has one of three cgroup layouts, and which one is only known
at run time: v1 (one hierarchy per controller, freezer, cpu, ... each mounted
under /sys/fs/cgroup/<name>), v2 (one unified hierarchy mounted at
/sys/fs/cgroup itself, its controllers listed in cgroup.controllers) or
hybrid (the v1 controllers mounted, plus a v2 hierarchy at
/sys/fs/cgroup/unified that holds only the controllers no v1 hierarchy took,
often none). `detect()` reads the mount table and returns a `Layout`; a
fault asks it which mechanism to use (`mechanism`: the v1 controller where
one is mounted, what the lab has always done and where a hybrid machine's
controllers are, else v2) and, when neither can do the job, what is missing
(`missing`: one sentence a user can act on). The operations below take a
cgroup's path and tell v1 from v2 by the files in it (freezer.state or
cgroup.freeze, cpu.cfs_quota_us or cpu.max), so a record written by any
version of the lab is undone the same way; they write one value per
write(2), as cgroup files want, and raise LabError naming the file.

QUIZSTACK_CGROUP=v1 or QUIZSTACK_CGROUP=v2 in the environment forces one
mechanism instead of choosing (and =v1 also turns cgroup.kill off). Its use
is testing: a hybrid machine's v2 hierarchy has no controllers, yet
cgroup.freeze and cgroup.kill are core v2 files that work without any, so
with QUIZSTACK_CGROUP=v2 the lab tests freeze and kill hosts for real through
/sys/fs/cgroup/unified, the code path a v2-only machine takes; `slow` is
refused there, as cpu.max needs the cpu controller, which the v1 hierarchy
holds. A value other than v1 or v2 makes every cgroup fault refuse, saying so.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, field

from quizstack.errors import LabError
from quizstack.lab import procs

ROOT = "/sys/fs/cgroup"
MOUNTS = "/proc/self/mounts"
ENV = "QUIZSTACK_CGROUP"
VERSIONS = ("v1", "v2")
# The names a v1 mount's options may carry besides mount flags.
V1_CONTROLLERS = frozenset({"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb",
                            "memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma"})
# The v1 controller each cgroup fault uses, and what it is called in a sentence.
V1_OF = {"freeze": "freezer", "slow": "cpu"}
NEEDS = {"freeze": "a freezer", "slow": "a cpu controller"}
# The kernels that brought the v2 files (a root cgroup has neither file, so
# a machine without any child cgroup to look at is judged by its release).
FREEZE_SINCE = (5, 2)
KILL_SINCE = (5, 14)

FREEZE_TIMEOUT = 5.0
REMOVE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Layout:
    """What this machine offers; `forced` is QUIZSTACK_CGROUP as found (None: unset)."""

    kind: str                         # "v1", "v2", "hybrid", or "none" (nothing mounted)
    root: str                         # where cgroup file systems are mounted, /sys/fs/cgroup
    v2: str | None = None             # the v2 hierarchy's mount point
    v1: dict = field(default_factory=dict)   # v1 controller (or "name=systemd") -> its mount point
    v2_controllers: frozenset = frozenset()  # the v2 root's cgroup.controllers
    v2_freeze: bool = False           # cgroup.freeze exists (Linux 5.2)
    v2_kill: bool = False             # cgroup.kill exists (Linux 5.14)
    forced: str | None = None

    def mechanism(self, kind: str) -> str | None:
        """The cgroup version, "v1" or "v2", that applies fault `kind` (freeze or slow)
        here; None if neither can."""
        if kind not in V1_OF or self.forced not in (None, *VERSIONS):
            return None
        v1 = V1_OF[kind] in self.v1
        v2 = self.v2 is not None and (self.v2_freeze if kind == "freeze" else "cpu" in self.v2_controllers)
        if self.forced:
            return self.forced if {"v1": v1, "v2": v2}[self.forced] else None
        return "v1" if v1 else "v2" if v2 else None

    def hierarchies(self) -> list[str]:
        """Every mounted hierarchy's root, v2 first (a v1 mount holding several controllers once)."""
        return list(dict.fromkeys(([self.v2] if self.v2 else []) + sorted(self.v1.values())))

    def named(self, name: str) -> list[str]:
        """The cgroups called `name` right under any hierarchy's root that exist."""
        return [path for root in self.hierarchies() if os.path.isdir(path := os.path.join(root, name))]

    @property
    def cgroup_kill(self) -> bool:
        """True if a cgroup's processes are killed with one write to cgroup.kill."""
        return self.v2 is not None and self.v2_kill and self.forced != "v1"

    def missing(self, fault_kind: str) -> str | None:
        """One sentence naming what fault `fault_kind` lacks here, or None if nothing.

        kill lacks nothing (cgroup.kill where there is one, a SIGKILL per process
        otherwise), nor do the faults that use no cgroup (cut, stop).
        """
        if fault_kind not in ("freeze", "slow", "kill"):
            return None
        if self.forced not in (None, *VERSIONS):
            return (f"{ENV}={self.forced!r} is not a cgroup version this project knows "
                    f"(v1 or v2; unset: the v1 controllers where mounted, else v2)")
        if fault_kind == "kill" or self.mechanism(fault_kind):
            return None
        controller = V1_OF[fault_kind]
        v1 = f"the cgroup v1 {controller} hierarchy ({self.root}/{controller})"
        if self.v2 is None:
            v2 = f"a cgroup v2 hierarchy (none is mounted under {self.root})"
        elif fault_kind == "freeze":
            v2 = f"cgroup.freeze in the cgroup v2 hierarchy at {self.v2} (Linux 5.2 or later)"
        else:
            offered = ", ".join(sorted(self.v2_controllers)) or "none"
            v2 = f"cpu in the cgroup v2 root's cgroup.controllers ({self.v2}/cgroup.controllers: {offered})"
        if self.forced == "v1":
            return f"{ENV}=v1 chooses cgroup v1, and fault {fault_kind} needs {v1}, which is not mounted"
        if self.forced == "v2":
            held = self.v1.get(controller)
            return (f"{ENV}=v2 chooses cgroup v2, and fault {fault_kind} needs {v2}"
                    + (f"; the {controller} controller is held by the v1 hierarchy at {held}" if held else ""))
        return f"fault {fault_kind} needs {NEEDS[fault_kind]}: neither {v1} nor {v2}"


def detect(root: str = ROOT, mounts: str = MOUNTS) -> Layout:
    """The cgroup layout of this machine, read from the mount table (and QUIZSTACK_CGROUP)."""
    root = root.rstrip("/") or "/"
    v2 = None
    v1: dict[str, str] = {}
    for point, fstype, options in _mount_table(mounts):
        if point != root and not point.startswith(root + "/"):
            continue
        if fstype == "cgroup2" and (v2 is None or point == root):
            v2 = point
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in V1_CONTROLLERS or option.startswith("name="):
                    v1.setdefault(option, point)
    controllers = frozenset()
    if v2 is not None:
        try:
            controllers = frozenset(read(f"{v2}/cgroup.controllers").split())
        except OSError:
            pass
    kind = ("hybrid" if v2 and v1 else "v2" if v2 else "v1" if v1 else "none")
    return Layout(kind=kind, root=root, v2=v2, v1=v1, v2_controllers=controllers,
                  v2_freeze=v2 is not None and _v2_has(v2, "cgroup.freeze", FREEZE_SINCE),
                  v2_kill=v2 is not None and _v2_has(v2, "cgroup.kill", KILL_SINCE),
                  forced=os.environ.get(ENV) or None)


def _mount_table(path: str) -> list[tuple[str, str, str]]:
    """(mount point, file system type, options) per line; the kernel writes a
    space in a path as \\040, and so on."""
    table = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 4:
                table.append((_unescape(fields[1]), fields[2], fields[3]))
    return table


def _unescape(text: str) -> str:
    parts = text.split("\\")
    out = parts[0]
    for part in parts[1:]:
        code = part[:3]
        out += (chr(int(code, 8)) + part[3:]) if len(code) == 3 and code.isdigit() else "\\" + part
    return out


def _v2_has(v2: str, name: str, since: tuple[int, int]) -> bool:
    """Whether non-root v2 cgroups have file `name`: a child cgroup shows it,
    and without one the kernel's release decides."""
    try:
        for entry in os.scandir(v2):
            if entry.is_dir(follow_symlinks=False):
                return os.path.exists(os.path.join(entry.path, name))
    except OSError:
        pass
    return kernel_release() >= since


def kernel_release() -> tuple[int, int]:
    numbers = []
    for part in os.uname().release.split("-")[0].split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        numbers.append(int(digits or 0))
    return tuple((numbers + [0, 0])[:2])


# -- files ------------------------------------------------------------------------------


def write(path: str, value: str):
    """One write(2) per value: cgroup files take one pid or setting per write."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def events(path: str) -> dict[str, str]:
    """A v2 cgroup's cgroup.events ({"populated": "1", "frozen": "0"})."""
    return dict(line.split(None, 1) for line in read(f"{path}/cgroup.events").splitlines() if " " in line)


def members(path: str) -> set[int]:
    """The processes directly in the cgroup (none if it is gone)."""
    try:
        return {int(line) for line in read(f"{path}/cgroup.procs").split()}
    except FileNotFoundError:
        return set()


def attach(path: str, pid: int):
    """Move a process (all its threads) into the cgroup at path; gone is fine."""
    try:
        write(f"{path}/cgroup.procs", str(pid))
    except ProcessLookupError:
        pass
    except OSError as exc:
        raise LabError(f"cannot move pid {pid} into {path}: {exc.strerror}") from None


def cgroup_of(pid: int, v2: str, proc: str = "/proc") -> str | None:
    """The v2 cgroup a process is in, as a path under the hierarchy's mount point
    (None if the process is gone). The kernel gives it relative to our own
    cgroup namespace, which is the machine's: the lab makes no cgroup namespace."""
    try:
        text = read(f"{proc}/{pid}/cgroup")
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            relative = line[3:].strip()
            return v2 if relative in ("", "/") else v2 + relative
    return None


# -- operations ---------------------------------------------------------------------------


def freeze(path: str, timeout: float = FREEZE_TIMEOUT):
    """Stop every process of the cgroup, and return once the kernel says all are.

    v2: cgroup.freeze 1, then `frozen 1` in cgroup.events. v1: freezer.state
    FROZEN, written again on each look (the v1 freezer retries the tasks it
    could not stop yet only when asked), until it reads FROZEN.
    """
    if os.path.exists(f"{path}/cgroup.freeze"):
        control, value, again = f"{path}/cgroup.freeze", "1", False

        def state():
            return "frozen " + events(path).get("frozen", "?")
        done = "frozen 1"
    elif os.path.exists(f"{path}/freezer.state"):
        control, value, again = f"{path}/freezer.state", "FROZEN", True

        def state():
            return "freezer state " + read(control)
        done = "freezer state FROZEN"
    else:
        raise LabError(f"{path}: neither cgroup.freeze (v2) nor freezer.state (v1 freezer) in it: cannot freeze")
    write(control, value)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while (seen := state()) != done:
        if time.monotonic() > deadline:
            raise LabError(f"{path} did not freeze in {timeout:g} s ({seen}): a process stuck in the kernel?")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
        if again:
            write(control, value)


def thaw(path: str):
    """Let the cgroup's processes run again; a cgroup that is gone needs nothing."""
    try:
        if os.path.exists(f"{path}/cgroup.freeze"):
            write(f"{path}/cgroup.freeze", "0")
        elif os.path.exists(f"{path}/freezer.state"):
            write(f"{path}/freezer.state", "THAWED")
    except FileNotFoundError:
        pass


def enable(controller: str, root: str, path: str):
    """Let `controller` reach the cgroup at path (v2): each ancestor from the
    root down must list it in cgroup.subtree_control. Left enabled afterwards:
    on a v2 machine systemd has cpu on at the root already, and turning it off
    could disturb cgroups that are not the lab's."""
    available = read(f"{root}/cgroup.controllers").split()
    if controller not in available:
        raise LabError(f"the cgroup v2 root offers no {controller} controller "
                       f"({root}/cgroup.controllers: {', '.join(available) or 'none'})")
    chain = [root]
    for step in os.path.relpath(os.path.dirname(path), root).split(os.sep):
        if step != ".":
            chain.append(os.path.join(chain[-1], step))
    for node in chain:
        control = f"{node}/cgroup.subtree_control"
        if controller in read(control).split():
            continue
        try:
            write(control, f"+{controller}")
        except OSError as exc:
            why = (" (a cgroup that holds processes cannot hand controllers down)"
                   if exc.errno == errno.EBUSY else "")
            raise LabError(f"cannot enable the {controller} controller in {control}: "
                           f"{exc.strerror}{why}") from None


def limit_cpu(path: str, quota_us: int, period_us: int):
    """At most quota_us of CPU time per period_us for the cgroup's processes together."""
    if os.path.exists(f"{path}/cpu.max"):
        write(f"{path}/cpu.max", f"{quota_us} {period_us}")
    elif os.path.exists(f"{path}/cpu.cfs_quota_us"):
        write(f"{path}/cpu.cfs_period_us", str(period_us))
        write(f"{path}/cpu.cfs_quota_us", str(quota_us))
    else:
        raise LabError(f"{path}: neither cpu.max (v2) nor cpu.cfs_quota_us (v1 cpu) in it: cannot limit the CPU")


def unlimit_cpu(path: str):
    """No CPU limit any more; a cgroup that is gone needs nothing."""
    try:
        if os.path.exists(f"{path}/cpu.max"):
            write(f"{path}/cpu.max", "max")
        elif os.path.exists(f"{path}/cpu.cfs_quota_us"):
            write(f"{path}/cpu.cfs_quota_us", "-1")
    except FileNotFoundError:
        pass


def subtree_members(path: str) -> list[int]:
    """Every process in the cgroup and the cgroups below it."""
    found: set[int] = set()
    for dirpath, _, _ in os.walk(path):
        found |= members(dirpath)
    return sorted(found)


def kill(path: str, use_file: bool = True):
    """SIGKILL for every process of the cgroup and below it.

    cgroup.kill (Linux 5.14) does it in one write and misses no fork in
    flight; without it (or with use_file False) each member gets its SIGKILL,
    checked against its start time so a reused pid is spared. Frozen v2
    tasks die either way; frozen v1 tasks only once thawed (the caller's part).
    """
    if use_file and os.path.exists(f"{path}/cgroup.kill"):
        write(f"{path}/cgroup.kill", "1")
        return
    for pid in subtree_members(path):
        procs.signal_record(procs.record(pid), signal.SIGKILL)


def remove(path: str, home: str | None = None, timeout: float = REMOVE_TIMEOUT) -> bool:
    """Move whatever is inside to `home` (the hierarchy's root if None, gone or
    refusing), then rmdir; True if there was a cgroup to remove.

    A member may fork while it is moved, and its child is born inside: move
    and try again until rmdir stops saying EBUSY.
    """
    if not os.path.isdir(path):
        return False
    root = os.path.dirname(path)
    deadline = time.monotonic() + timeout
    while True:
        for pid in members(path):
            try:
                attach(home or root, pid)
            except LabError:
                attach(root, pid)   # home gone, or grown children of its own (v2: no internal processes)
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise LabError(f"cannot remove cgroup {path}: {exc.strerror}") from None
        time.sleep(0.01)
