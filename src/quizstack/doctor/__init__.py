"""`quizstack doctor`: what this machine lacks for the lab, one line per item, before `up`.

Everything the lab depends on that comes from the machine rather than from
this checkout (kernel features, packages, versions, the /run/lock layout,
cgroups, a free port) is an item here, so that a missing piece is one clear
line saying how to get it instead of `up` failing half-way. An item joins the
two halves of the package: what `machine.Machine` read (files, versions, tries
in throwaway network namespaces) and the `judges` that turn it into a
`Result`: ok, warn, or missing. "missing" is reserved for what `up` of the
default scenario cannot do without, and `require` (called by `up` before
anything starts) refuses with every missing line at once. Warnings name what
only some commands need (the chaos faults, full-system hosts, the Compose
export, the default port). The judges and their parsers are this package's
API as well: `doctor.judge_release(text)`, `doctor.setup_sh_packages(text)`.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import quizstack
from quizstack.doctor.judges import (
    MISSING, NAMESPACES, OK, WARN, Result, batch_failures, iproute2_version, judge_cgroups,
    judge_fuse, judge_iproute2, judge_link, judge_locks, judge_namespaces, judge_nf_tables,
    judge_nftables, judge_overlay, judge_packages, judge_port, judge_programs, judge_python,
    judge_release, nft_version, setup_sh_packages,
)
from quizstack.doctor.machine import Machine, read
from quizstack.errors import QuizstackError

__all__ = [
    "MISSING", "OK", "WARN", "ITEMS", "Item", "Machine", "Result", "essential", "for_scenario",
    "line", "require", "run", "up_packages", "setup_sh_packages", "SETUP_SH", "NAMESPACES",
    "batch_failures", "iproute2_version", "nft_version", "judge_cgroups", "judge_fuse",
    "judge_iproute2", "judge_link", "judge_locks", "judge_namespaces", "judge_nf_tables",
    "judge_nftables", "judge_overlay", "judge_packages", "judge_port", "judge_programs",
    "judge_python", "judge_release",
]

# Beyond the deployment's packages (deploy/packages.py): the lab's init in
# every host, and the scanner of the checks `up` ends with.
LAB_PACKAGES = ("supervisor", "nmap")
SETUP_SH = Path(quizstack.__file__).resolve().parents[2] / "setup.sh"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Item:
    name: str
    check: Callable[["Machine"], Result]
    essential: bool   # can be missing: `up` refuses without it (and these are quick)


def up_packages() -> list:
    """What `up` of the default scenario needs on this machine: the deployment's, the lab's."""
    from quizstack.deploy import packages as deploy_packages

    wanted = list(deploy_packages.BASE)
    for found in list(deploy_packages.PACKAGES.values()) + [LAB_PACKAGES]:
        wanted += [p for p in found if p not in wanted]
    return wanted


# -- the items ----------------------------------------------------------------------


def check_root(m: Machine) -> Result:
    if m.root:
        return Result("root", OK, "running as root")
    return Result("root", MISSING, f"running as uid {os.geteuid()}: the lab makes namespaces and mounts",
                  "run it as root (sudo)")


def check_release(m: Machine) -> Result:
    return judge_release(m.os_release)


def check_python(m: Machine) -> Result:
    return judge_python(tuple(sys.version_info[:3]), sys.base_prefix)


def check_namespaces(m: Machine) -> Result:
    present = {k for k in NAMESPACES if os.path.exists(f"/proc/self/ns/{k}")}
    limits = {}
    for kind in NAMESPACES:
        text = read(f"/proc/sys/user/max_{kind}_namespaces")
        limits[kind] = int(text) if text and text.strip().isdigit() else None
    return judge_namespaces(present, limits)


def check_overlay(m: Machine) -> Result:
    return judge_overlay(read("/proc/filesystems") or "", m.modules)


def check_bridge(m: Machine) -> Result:
    return judge_link("bridge", m.link_probe)


def check_veth(m: Machine) -> Result:
    return judge_link("veth", m.link_probe)


def check_nf_tables(m: Machine) -> Result:
    return judge_nf_tables(m.nft_probe)


def check_fuse(m: Machine) -> Result:
    import stat

    try:
        dev = stat.S_ISCHR(os.stat("/dev/fuse").st_mode)
    except OSError:
        dev = False
    return judge_fuse(dev, "" if dev else m.modules)


def check_nftables(m: Machine) -> Result:
    return judge_nftables(m.output(["nft", "--version"]))


def check_iproute2(m: Machine) -> Result:
    return judge_iproute2(m.output(["ip", "-V"]))


def check_packages(m: Machine) -> Result:
    essential = up_packages()
    text = read(SETUP_SH)
    extra = setup_sh_packages(text) if text else []
    if m.output(["dpkg-query", "--version"]) is None:
        return Result("packages", WARN, "no dpkg-query: not a Debian system, packages not checked")
    return judge_packages(essential, extra, m.installed(essential + extra), from_setup=bool(extra))


def check_locks(m: Machine) -> Result:
    from quizstack.lab.boot import TREES

    var_lock = "/var/lock"
    if os.path.islink(var_lock):
        kind = "symlink"
    elif os.path.isdir(var_lock):
        kind = "dir"
    elif os.path.lexists(var_lock):
        kind = "other"
    else:
        kind = "absent"
    real = os.path.realpath(var_lock) if kind == "symlink" else None
    return judge_locks(os.path.isdir("/run/lock"), kind, real,
                       run_lock_real=os.path.realpath("/run/lock"), trees=TREES)


def check_cgroups(m: Machine) -> Result:
    try:
        from quizstack.lab import cgroups
    except ImportError:
        return judge_cgroups("cannot judge: quizstack.lab.cgroups is not there")
    try:
        layout = cgroups.detect()
    except (QuizstackError, OSError) as exc:
        return judge_cgroups(str(exc))
    return judge_cgroups(layout)


def check_full_systems(m: Machine) -> Result:
    from quizstack.lab.system import NSPAWN

    programs = {NSPAWN: "systemd-container", "mmdebstrap": "mmdebstrap"}
    present = {p for p in programs if shutil.which(p)}
    return judge_programs("full-system hosts", programs, present, 'scenarios with kind = "system"')


def check_compose(m: Machine) -> Result:
    from quizstack.export.compose_run import COMPOSE, DOCKERD, TOOLS

    programs = {p: TOOLS[p] for p in (DOCKERD, COMPOSE)}
    present = {p for p in programs if os.path.exists(p)}
    return judge_programs("Compose export", programs, present, "`quizstack compose`")


def check_port(m: Machine) -> Result:
    port = DEFAULT_PORT
    if m.port_free(port):
        return judge_port(port, True, None)
    lab = m.lab_on_port(port)
    ss = "" if lab else m.output(["ss", "-Hltnp", f"sport = :{port}"]) or ""
    return judge_port(port, False, lab, ss)


ITEMS = [
    Item("root", check_root, True),
    Item("Debian", check_release, False),
    Item("Python", check_python, True),
    Item("namespaces", check_namespaces, True),
    Item("overlayfs", check_overlay, True),
    Item("bridge", check_bridge, True),
    Item("veth", check_veth, True),
    Item("nf_tables", check_nf_tables, True),
    Item("FUSE", check_fuse, True),
    Item("nftables", check_nftables, True),
    Item("iproute2", check_iproute2, True),
    Item("packages", check_packages, True),
    Item("locks", check_locks, True),
    Item("cgroups", check_cgroups, False),
    Item("full-system hosts", check_full_systems, False),
    Item("Compose export", check_compose, False),
    Item(f"port {DEFAULT_PORT}", check_port, False),
]


def run(items=None, machine: Machine | None = None) -> list[Result]:
    """Every item's result, in order; an item that cannot even be judged is a warning."""
    machine = machine or Machine()
    results = []
    for item in ITEMS if items is None else items:
        try:
            results.append(item.check(machine))
        except (QuizstackError, OSError, ValueError) as exc:
            results.append(Result(item.name, WARN, f"could not check: {exc}"))
    return results


def essential() -> list[Item]:
    """The items `up` runs first: the ones that can be missing (and are quick)."""
    return [item for item in ITEMS if item.essential]


def for_scenario(topology) -> list[Item]:
    """Items a scenario makes essential: its full-system hosts' tools, say."""
    if topology is not None and any(h.system for h in topology.hosts.values()):
        return [Item("full-system hosts", check_full_systems, True)]
    return []


def require(topology=None, machine: Machine | None = None):
    """Before `up` starts anything: every missing piece at once, in one QuizstackError."""
    from quizstack.lab.lab import Lab

    # Without root nothing else can be tried; the lab's own words for it.
    Lab._require_root()
    machine = machine or Machine()
    lacking = [r for r in run(essential(), machine) if r.missing]
    # What only this scenario needs is lacking as soon as it is not ok.
    lacking += [r for r in run(for_scenario(topology), machine) if not r.ok]
    if lacking:
        lines = "".join(f"\n  {line(r)}" for r in lacking)
        raise QuizstackError(f"this machine lacks what the lab needs (`quizstack doctor` "
                             f"checks everything):{lines}")


def line(result: Result) -> str:
    """An item, what was found, and for what is lacking how to get it."""
    text = f"{result.name}: {result.detail}"
    return f"{text}; fix: {result.fix}" if result.fix and not result.ok else text
