"""Faults injected into the hosts of a running lab, and healed: the lab's half of `quizstack chaos`.

An experiment needs faults that look, from the other hosts, like the real
thing, that take effect within milliseconds (so the moment can be lined up
with the clients' request timestamps) and that a crash can never leave
behind. So each fault is one kernel mechanism, applied to the host from
outside, never by asking the host itself: `kill` is a power cut (its links
go down on the bridge side, then its init is SIGKILLed, which ends its whole
PID namespace; its files stay), `cut` a pulled cable (links down, processes
untouched), `freeze` a hung host (every process stopped by a cgroup freezer
while the kernel still answers ARP, ping and TCP handshakes), `slow` a
starved one (a CFS quota of the cpu controller) and `stop` a crashed
service (supervisord stops one program, or systemd one unit: programs.py).
Every fault is written to state.json before it is applied, and every cgroup
before it is made, so `heal`, `up`, `start`, `stop` and `destroy` find and
undo exactly what is there, even after a kill -9 in the middle of an
injection; healing each kind is idempotent for that reason. (The functions
take the Lab, for its commands, state file and boot path, and the state it
loaded under its lock; Lab.inject/heal/faults are thin wrappers.)

Cgroup v1 or v2 (cgroups.py decides, and says what is missing when neither
will do): with v1, freeze and slow each make a cgroup `quizstack-<lab>-<host>`
in the freezer or cpu hierarchy and move the host's processes in. With v2 a
process is in one cgroup only, so a namespace host's freeze and slow share
one `quizstack-<lab>-<host>` under the v2 root (each fault recording it; the
last heal moves the processes back where the host's init was and removes it),
and a full-system host is frozen or slowed in place, in the cgroup its keeper
made (system.py), without moving any of nspawn's processes.
"""

from __future__ import annotations

import os
import signal
import time

from quizstack.errors import LabError
from quizstack.lab import cgroups, plan, procs, programs, state as statefile, system
from quizstack.topology import Host

KINDS = ("kill", "cut", "freeze", "slow", "stop")
PARAMS = {"kill": (), "cut": (), "freeze": (), "slow": ("cpu",), "stop": ("service",)}

CGROUP_FAULTS = ("freeze", "slow")
CFS_PERIOD_US = 100_000

KILL_TIMEOUT = 10.0
FREEZE_TIMEOUT = 5.0
CGROUP_TIMEOUT = 5.0
MAX_SWEEPS = 50

# Healing runs in this order whatever order the faults came in: thaw first
# (nothing else works on a frozen host: not SIGKILL, not supervisord), give
# the CPU back, bring the links up, then boot killed hosts and start the
# stopped programs, which need a running, reachable host.
STEPS = ("thaw", "unslow", "links", "boot", "start")
STEPS_OF = {"freeze": ("thaw",), "slow": ("unslow",), "cut": ("links",),
            "kill": ("links", "boot"), "stop": ("start",)}


def _nothing(message):
    pass


# -- pure helpers --------------------------------------------------------------------


def check_percent(value) -> int:
    """A CPU share as a whole percentage of one CPU, 1..100 ("20" and "20%" too)."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        digits = value.strip().removesuffix("%")
        number = int(digits) if digits.isascii() and digits.isdigit() else None
    if number is None or not 1 <= number <= 100:
        raise LabError(f"bad CPU percentage {value!r}: a whole number from 1 to 100 (of one CPU)")
    return number


def check_params(kind: str, params: dict) -> dict:
    """The fault's parameters, checked and normalized: {}, {"cpu": 20} or {"service": "web"}."""
    if kind not in PARAMS:
        raise LabError(f"unknown fault {kind!r} (faults: {', '.join(KINDS)})")
    wanted = PARAMS[kind]
    extra = sorted(set(params) - set(wanted))
    if extra:
        raise LabError(f"fault {kind} takes no {', '.join(extra)}"
                       + (f" (only {', '.join(wanted)})" if wanted else ""))
    missing = [p for p in wanted if params.get(p) is None]
    if missing:
        raise LabError(f"fault {kind} needs {missing[0]}"
                       + (" (a percentage of one CPU, 1..100)" if missing[0] == "cpu" else
                          " (a program of the host's: supervisord's, or a systemd unit on a full system)"))
    if kind == "slow":
        return {"cpu": check_percent(params["cpu"])}
    if kind == "stop":
        service = params["service"]
        if not isinstance(service, str) or not service or any(c.isspace() for c in service):
            raise LabError(f"bad program name {service!r}")
        return {"service": service}
    return {}


def cgroup_name(lab: str, host: str) -> str:
    """No '-' in lab names (plan.py), so quizstack-<lab>-<host> is one lab's, one host's."""
    return f"quizstack-{lab}-{host}"


def cgroup_path(hierarchy: str, lab: str, host: str) -> str:
    """A fault's cgroup for a namespace host, right under a hierarchy's root
    (a v1 controller's mount point, or the v2 one)."""
    return f"{hierarchy}/{cgroup_name(lab, host)}"


def cgroup_entry(layout: cgroups.Layout, lab: str, kind: str, host: str, *,
                 system_host: bool = False, home: str | None = None) -> dict:
    """The state record of the cgroup fault `kind` (freeze, slow) uses on this layout (pure).

    v1: {"kind": "cgroup", "controller": "freezer" | "cpu", "path", "host", "fault"},
    as earlier versions wrote them, plus host and fault. v2: controller "v2";
    a namespace host's carries "home", the cgroup to move its processes back
    to; a full system's is its keeper's cgroup, "in_place": made and removed
    by the keeper's side, never by a heal.
    """
    mechanism = layout.mechanism(kind)
    if mechanism == "v1":
        controller = cgroups.V1_OF[kind]
        return {"kind": "cgroup", "controller": controller,
                "path": cgroup_path(layout.v1[controller], lab, host), "host": host, "fault": kind}
    if mechanism != "v2":
        raise LabError(layout.missing(kind) or f"fault {kind} uses no cgroup")
    if system_host:
        return {"kind": "cgroup", "controller": "v2", "path": layout.v2 + system.cgroup_dir(lab, host),
                "host": host, "fault": kind, "in_place": True}
    return {"kind": "cgroup", "controller": "v2", "path": cgroup_path(layout.v2, lab, host),
            "host": host, "fault": kind, "home": home or layout.v2}


def fault_of(lab: str, entry: dict) -> tuple[str, str]:
    """(fault kind, host) of a cgroup record, those of earlier versions
    ({"controller": "freezer" | "cpu", "path": .../quizstack-<lab>-<host>}) included."""
    host = entry.get("host") or os.path.basename(entry["path"]).removeprefix(cgroup_name(lab, ""))
    return _kind_of(entry), host


def _kind_of(entry: dict) -> str:
    return entry.get("fault") or {"freezer": "freeze", "cpu": "slow"}[entry["controller"]]


def cpu_quota_us(percent: int) -> int:
    return CFS_PERIOD_US * percent // 100


def link_batch(host: Host, up: bool) -> str:
    """`ip -n qs-<lab> -batch` text: the bridge-side veths of a host, up or down.

    The bridge side, not the host's eth<n>: the host's own view of its
    interfaces (UP, addresses, routes) stays as it was, as when a cable is
    pulled out of the switch; the carrier is lost on both ends.
    """
    state = "up" if up else "down"
    return "".join(f"link set {plan.veth_name(host.name, i)} {state}\n"
                   for i in range(len(host.interfaces)))


def heal_plan(faults: list[dict]) -> list[tuple[str, list[dict]]]:
    """The steps that undo these faults, in STEPS order, each with the faults it acts on."""
    return [(step, group) for step in STEPS
            if (group := [f for f in faults if step in STEPS_OF[f["kind"]]])]


# -- inject -----------------------------------------------------------------------------


def inject(lab, st: dict, kind: str, host: str, params: dict) -> dict:
    """Check, record, apply; returns a copy of the fault record.

    The record: {"kind", "host", "cpu" (slow) | "service" (stop), "began": wall
    clock just before the first change, "t": wall clock once the fault is in
    full effect (kill: the init is gone; cut: links down; freeze: the freezer
    reads FROZEN; slow: every process under the quota; stop: the program
    stopped), None until then}. Everything that can be refused is refused
    before anything is recorded or changed. If applying fails, the fault is
    healed at once and the error raised; a crash instead leaves the record
    (t None) for the next heal or up.
    """
    params = check_params(kind, params)
    topo = lab.topology
    if host not in topo.hosts:
        raise LabError(f"lab {lab.name}: no host {host!r} (hosts: {', '.join(topo.hosts)})")
    active = st.setdefault("faults", [])
    mine = {f["kind"]: f for f in active if f["host"] == host}
    if kind in mine:
        raise LabError(f"lab {lab.name}: host {host} already has a {kind} fault; heal it first")
    init = lab._running(host)
    if init is None:
        why = "it was killed; heal it first" if "kill" in mine else "start it first"
        raise LabError(f"lab {lab.name}: cannot {kind} host {host}: it is not running ({why})")
    entry = None
    if kind in CGROUP_FAULTS + ("kill",):
        layout = cgroups.detect()
        why = layout.missing(kind)
        if why:
            raise LabError(why)
        if kind in CGROUP_FAULTS:
            entry = _new_entry(lab, st, layout, kind, host, init)
    if kind == "stop":
        if "freeze" in mine:
            raise LabError(f"lab {lab.name}: host {host} is frozen; heal it before stopping a program")
        programs.check(lab, host, init, params["service"])
    fault = {"kind": kind, "host": host, **params, "began": time.time(), "t": None}
    active.append(fault)
    if entry is not None:
        statefile.add_created(st, entry)
    lab._save(st)
    try:
        _APPLY[kind](lab, st, fault, init)
    except Exception as exc:
        try:
            _heal(lab, st, [fault], boot=True, progress=_nothing)
        except Exception:
            pass    # the record stays: the next heal or up finishes the job
        if isinstance(exc, OSError):     # a cgroup file refused a write
            raise LabError(f"lab {lab.name}: {kind} {host} failed, undone: {exc}") from exc
        raise
    fault["t"] = time.time()
    lab._save(st)
    return dict(fault)


def _new_entry(lab, st, layout, kind, host, init) -> dict:
    """The cgroup record of a freeze or slow about to be injected, checked
    against what is there (the keeper's cgroup, the host's other v2 fault)."""
    system_host = bool(init.get("system"))
    home = None
    if layout.mechanism(kind) == "v2" and not system_host:
        # The host's other v2 fault, if any, moved its processes already and knows where from.
        shared = cgroup_path(layout.v2, lab.name, host)
        home = next((e["home"] for e in statefile.created(st, "cgroup")
                     if e["path"] == shared and e.get("home")), None)
        home = home or cgroups.cgroup_of(init["pid"], layout.v2)
    entry = cgroup_entry(layout, lab.name, kind, host, system_host=system_host, home=home)
    if entry.get("in_place") and not os.path.isdir(entry["path"]):
        raise LabError(f"lab {lab.name}: cannot {kind} host {host} through cgroup v2: "
                       f"its keeper's cgroup {entry['path']} is not there")
    return entry


def _entries(lab, st, kind: str, host: str) -> list[dict]:
    """The cgroup records of a host's fault (one, unless an old state left more)."""
    return [e for e in statefile.created(st, "cgroup") if fault_of(lab.name, e) == (kind, host)]


def _thaw_v1(lab, st, host: str):
    for entry in _entries(lab, st, "freeze", host):
        if entry["controller"] != "v2":
            cgroups.thaw(entry["path"])


def _apply_kill(lab, st, fault, init):
    host = fault["host"]
    _set_links(lab, [host], up=False)
    # A task frozen by the v1 freezer acts on SIGKILL only once thawed: thawed
    # after its signal is queued, it dies as soon as it runs. (The v2 freezer
    # lets SIGKILL through: a frozen v2 cgroup stays frozen until heal.)
    if init.get("system"):
        from quizstack.lab import systemhosts

        if systemhosts.power_cut(init, KILL_TIMEOUT, then=lambda: _thaw_v1(lab, st, host)):
            raise LabError(f"lab {lab.name}: host {host}: processes still alive "
                           f"{KILL_TIMEOUT:.0f} s after SIGKILL")
        return
    # The init's death takes the rest of its PID namespace with it.
    procs.signal_record(init, signal.SIGKILL)
    _thaw_v1(lab, st, host)
    if procs.wait_gone([init], time.monotonic() + KILL_TIMEOUT):
        raise LabError(f"lab {lab.name}: host {host}: init (pid {init['pid']}) still alive "
                       f"{KILL_TIMEOUT:.0f} s after SIGKILL")


def _apply_cut(lab, st, fault, init):
    _set_links(lab, [fault["host"]], up=False)


def _apply_freeze(lab, st, fault, init):
    host = fault["host"]
    entry = _entries(lab, st, "freeze", host)[-1]     # the one inject just recorded
    path = entry["path"]
    if not entry.get("in_place"):
        os.makedirs(path, exist_ok=True)     # exists already if an interrupted run, or the host's v2 slow, made it
        _enlist(path, _host_netns_inode(lab, host))
    try:
        cgroups.freeze(path, FREEZE_TIMEOUT)
    except LabError as exc:
        raise LabError(f"lab {lab.name}: host {host}: {exc}") from None


def _apply_slow(lab, st, fault, init):
    host = fault["host"]
    entry = _entries(lab, st, "slow", host)[-1]     # the one inject just recorded
    path = entry["path"]
    if entry["controller"] == "v2":
        root = path.removesuffix(system.cgroup_dir(lab.name, host)) if entry.get("in_place") \
            else os.path.dirname(path)
        cgroups.enable("cpu", root, path)
    if not entry.get("in_place"):
        os.makedirs(path, exist_ok=True)
    # The quota is in place before the first process moves in: no moment at full speed.
    cgroups.limit_cpu(path, cpu_quota_us(fault["cpu"]), CFS_PERIOD_US)
    if not entry.get("in_place"):
        _enlist(path, _host_netns_inode(lab, host))


def _apply_stop(lab, st, fault, init):
    programs.stop(lab, fault["host"], init, fault["service"])


_APPLY = {"kill": _apply_kill, "cut": _apply_cut, "freeze": _apply_freeze,
          "slow": _apply_slow, "stop": _apply_stop}


# -- heal ---------------------------------------------------------------------------------


def heal(lab, st: dict, host: str | None = None, *, boot: bool = True, progress=None) -> list[dict]:
    """Undo every recorded fault (of one host, or all); returns what was healed.

    boot=False is for a lab about to be powered off (`stop`): killed hosts stay
    off and stopped programs are left to the next boot, which starts them.
    """
    if host is not None and host not in lab.topology.hosts:
        raise LabError(f"lab {lab.name}: no host {host!r} (hosts: {', '.join(lab.topology.hosts)})")
    chosen = [f for f in st.get("faults", []) if host is None or f["host"] == host]
    return _heal(lab, st, chosen, boot=boot, progress=progress or _nothing)


def _heal(lab, st, chosen, boot, progress) -> list[dict]:
    healed = []

    def finished(step, group):
        # A fault is healed after the last of its steps; each step is saved,
        # so a crash in between repeats only what is left (all idempotent).
        now = time.time()
        for fault in group:
            if STEPS_OF[fault["kind"]][-1] == step and fault in st["faults"]:
                st["faults"].remove(fault)
                healed.append(dict(fault, injected=fault["t"], t=now))
                progress(f"fault: {fault['kind']} {fault['host']} healed")
        lab._save(st)

    for step, group in heal_plan(chosen):
        if step in ("thaw", "unslow"):
            kind = "freeze" if step == "thaw" else "slow"
            for fault in group:
                for entry in _entries(lab, st, kind, fault["host"]):
                    _undo(lab, st, entry)
                    statefile.remove_created(st, entry)
        elif step == "links":
            _set_links(lab, sorted({f["host"] for f in group}), up=True)
        elif step == "boot" and boot:
            # The lab's own boot path: boot files, stray-init check, readiness.
            lab._start_hosts(lab.topology, st, progress, only=[f["host"] for f in group])
        elif step == "start" and boot:
            # A program that will not start again is reported, but its record
            # goes: the stop was undone as far as it can be, and a broken
            # program must not make every later up fail.
            errors = []
            for fault in group:
                try:
                    _start_program(lab, fault)
                except LabError as exc:
                    errors.append(exc)
            finished(step, group)
            if errors:
                raise errors[0]
            continue
        finished(step, group)
    return healed


def _start_program(lab, fault):
    init = lab._running(fault["host"])
    if init is None:
        return      # the host is off: its next boot starts the program
    programs.start(lab, fault["host"], init, fault["service"])


# -- destroy's part -------------------------------------------------------------------------


def thaw_all(st: dict):
    """Before destroy kills anything: a frozen task cannot die (cgroup v1;
    v2 lets SIGKILL through, and thawing there is harmless)."""
    for entry in statefile.created(st, "cgroup"):
        if _kind_of(entry) == "freeze":
            cgroups.thaw(entry["path"])


def remove_cgroups(lab, st: dict) -> int:
    """Every cgroup the state records, undone and removed (after the processes are gone)."""
    removed = 0
    for entry in list(statefile.created(st, "cgroup")):
        removed += _undo(lab, st, entry)
        statefile.remove_created(st, entry)
    return removed


# -- links, cgroups ------------------------------------------------------------------------------


def _set_links(lab, hosts: list[str], up: bool):
    topo = lab.topology
    text = "".join(link_batch(topo.host(h), up) for h in hosts)
    netns = plan.lab_netns(lab.name)
    lab._run(["ip", "-n", netns, "-batch", "-"], input=text, where=f"lab {lab.name}: netns {netns}")


def _host_netns_inode(lab, host: str) -> int:
    inode = procs.netns_inode(plan.netns_path(plan.host_netns(lab.name, host)))
    if inode is None:
        raise LabError(f"lab {lab.name}: host {host} has no network namespace (run `quizstack up`)")
    return inode


def _netns_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except (FileNotFoundError, ProcessLookupError):
        return None


def _enlist(path: str, inode: int):
    """Move every process of the host (those in its network namespace) into a cgroup.

    A process may fork between the scan and its move, and its child starts in
    the old cgroup: scan again until a whole scan finds nobody left out.
    Children forked after their parent moved are born inside.
    """
    for _ in range(MAX_SWEEPS):
        inside = cgroups.members(path)
        outside = [r for r in procs.processes_in_netns({inode}) if r["pid"] not in inside]
        if not outside:
            break
        for rec in outside:
            cgroups.attach(path, rec["pid"])
    else:
        raise LabError(f"{path}: new processes kept appearing after {MAX_SWEEPS} sweeps")
    # A pid the kernel reused between a scan and its write would have brought
    # in a stranger: only the host's own processes stay.
    root = os.path.dirname(path)
    for pid in cgroups.members(path):
        ns = _netns_of(pid)
        if ns is not None and ns != inode:
            cgroups.attach(root, pid)


def _undo(lab, st, entry: dict) -> bool:
    """Thaw or unlimit a fault's cgroup, and remove it unless it is the
    keeper's or the host's other v2 fault still uses it. True if removed;
    tolerates a cgroup never made."""
    path = entry["path"]
    try:
        if _kind_of(entry) == "freeze":
            cgroups.thaw(path)
        else:
            cgroups.unlimit_cpu(path)
        if entry.get("in_place") or any(e is not entry and e["path"] == path
                                        for e in statefile.created(st, "cgroup")):
            return False
        # v1: back to the hierarchy's root, as ever; v2: where the host's init was.
        return cgroups.remove(path, home=entry.get("home"), timeout=CGROUP_TIMEOUT)
    except LabError as exc:
        raise LabError(f"lab {lab.name}: {exc}") from None
    except OSError as exc:
        raise LabError(f"lab {lab.name}: {path}: {exc.strerror}") from None
