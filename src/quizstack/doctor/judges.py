"""The doctor's judges: what was found on the machine in, a `Result` out.

Each function here takes what `Machine` captured (a file's text, a program's
output, a probe's return code and words, a few plain values) and says whether
the lab has what it needs: ok, warn, or missing, with what was found and how
to get what lacks. They run nothing and read nothing, so the unit tests feed
them captured text from real machines; the small parsers they use (versions,
`ip -batch` and `nft` errors, setup.sh's package list, `ss` lines) live with
them. "missing" is kept for what `up` of the default scenario cannot do without.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

from quizstack import debian
from quizstack.doctor.machine import LINK_PROBE

OK, WARN, MISSING = "ok", "warn", "missing"

PYTHON_MIN = (3, 11)
# The oldest versions the lab is tested with: Debian 12's. Every feature it
# uses (`ip -n`, `ip -batch`, `ip netns`; `nft -c -f`, inet tables, symbolic
# priorities, log group) is older than these; older is a warning, absent missing.
NFTABLES_TESTED = (1, 0, 6)
IPROUTE2_TESTED = (6, 1, 0)
# The namespaces each lab host gets (lab/boot.py), and a floor for the kernel's
# per-user limit on each: the complete scenario takes 19 network namespaces,
# two labs side by side and the tests' own some 60.
NAMESPACES = ("net", "mnt", "uts", "ipc", "pid")
NAMESPACE_LIMIT_MIN = 64
FAULT_KINDS = ("freeze", "slow", "kill")


@dataclass(frozen=True)
class Result:
    name: str
    status: str            # OK, WARN or MISSING
    detail: str
    fix: str | None = None  # how to get it, for a warning or a missing piece

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def missing(self) -> bool:
        return self.status == MISSING

    def as_dict(self) -> dict:
        return asdict(self)


def judge_release(text: str | None) -> Result:
    """/etc/os-release's text: one of debian.RELEASES is ok, anything else a warning."""
    name = "Debian"
    supported = " and ".join(r.number for r in debian.RELEASES.values())
    if text is None:
        return Result(name, WARN, f"no /etc/os-release: quizstack supports Debian {supported}")
    info = debian.parse_os_release(text)
    pretty = info.get("PRETTY_NAME") or info.get("NAME") or "an unknown system"
    # Debian itself: a derivative naming Debian in ID_LIKE is still "not Debian" here.
    if info.get("ID") != "debian":
        return Result(name, WARN, f"{pretty}: not Debian; quizstack supports Debian {supported} only "
                                  "(package names and versions may differ)")
    release = debian.RELEASES.get(debian.codename_of(info))
    if release is None:
        return Result(name, WARN, f"{pretty}: quizstack supports Debian {supported} only; it may work")
    return Result(name, OK, release.name)


def judge_python(version: tuple, base_prefix: str) -> Result:
    shown = ".".join(map(str, version[:3]))
    if tuple(version[:2]) < PYTHON_MIN:
        return Result("Python", MISSING, f"{shown}, older than {'.'.join(map(str, PYTHON_MIN))}",
                      "run ./setup.sh (a .venv on Debian's own python3)")
    if base_prefix != "/usr":
        return Result("Python", WARN, f"{shown} from {base_prefix}: the app servers run QUIZ from "
                                      "this environment as www-data, which wants Debian's own python3",
                      "run ./setup.sh (it remakes .venv on /usr/bin/python3)")
    return Result("Python", OK, f"{shown} (Debian's own)")


def judge_namespaces(present: set, limits: dict) -> Result:
    """present: the kinds in /proc/self/ns;
    limits: kind -> user.max_<kind>_namespaces (None if unreadable)."""
    absent = [k for k in NAMESPACES if k not in present]
    if absent:
        return Result("namespaces", MISSING, f"no {', '.join(absent)} namespaces (/proc/self/ns)",
                      "a kernel with CONFIG_NAMESPACES and the NET_NS, PID_NS, UTS_NS, IPC_NS options "
                      "(Debian's have them)")
    low = {k: v for k, v in limits.items() if v is not None and v < NAMESPACE_LIMIT_MIN}
    if low:
        shown = ", ".join(f"user.max_{k}_namespaces = {v}" for k, v in low.items())
        fix = "; ".join(f"sysctl -w user.max_{k}_namespaces=10000" for k in low)
        return Result("namespaces", MISSING, f"{shown}: a lab takes one per host (19 for complete)", fix)
    return Result("namespaces", OK, ", ".join(NAMESPACES))


def filesystem_types(text: str) -> set:
    """/proc/filesystems' type names."""
    return {line.split()[-1] for line in text.splitlines() if line.strip()}


def module_known(name: str, modules_text: str) -> bool:
    """Whether modules.dep/modules.builtin (concatenated) name a module (foo.ko, .ko.xz, ...)."""
    return re.search(rf"(^|/){re.escape(name)}\.ko(\.\w+)?(:|$)", modules_text, re.M) is not None


def judge_overlay(filesystems_text: str, modules_text: str = "") -> Result:
    if "overlay" in filesystem_types(filesystems_text):
        return Result("overlayfs", OK, "overlay in /proc/filesystems")
    if module_known("overlay", modules_text):
        return Result("overlayfs", OK, "overlay: a module, loaded by the first mount")
    return Result("overlayfs", MISSING,
                  "no overlay in /proc/filesystems (each host's copy-on-write /etc, /var, ...)",
                  "a kernel with CONFIG_OVERLAY_FS, or `modprobe overlay`")


def judge_fuse(dev_fuse: bool, modules_text: str = "") -> Result:
    if dev_fuse:
        return Result("FUSE", OK, "/dev/fuse (GlusterFS mounts on the app servers)")
    if module_known("fuse", modules_text):
        return Result("FUSE", MISSING, "no /dev/fuse, which the app servers' GlusterFS mounts open",
                      "modprobe fuse")
    return Result("FUSE", MISSING, "no /dev/fuse, which the app servers' GlusterFS mounts open",
                  "a kernel with CONFIG_FUSE_FS, or `modprobe fuse`")


def batch_failures(output: str) -> dict:
    """`ip -force -batch` output -> {line number: what ip said before "Command failed -:N"}."""
    failures, said = {}, []
    for line in output.splitlines():
        found = re.match(r"Command failed \S*:(\d+)\s*$", line.strip())
        if found:
            failures[int(found.group(1))] = " ".join(said) or "failed"
            said = []
        elif line.strip():
            said.append(line.strip())
    return failures


KERNEL_FIX = {
    "bridge": "a kernel with CONFIG_BRIDGE, or `modprobe bridge`",
    "veth": "a kernel with CONFIG_VETH, or `modprobe veth`",
}


def judge_link(feature: str, probe: tuple | None) -> Result:
    """bridge or veth, from (returncode, output) of LINK_PROBE in a throwaway namespace."""
    if probe is None:
        return Result(feature, WARN, "not tried: it takes root (a throwaway network namespace)")
    returncode, output = probe
    if returncode == 127 or returncode == -1:
        return Result(feature, MISSING, f"not tried: {output.strip() or 'unshare or ip not found'}",
                      "apt-get install util-linux iproute2")
    failures = batch_failures(output)
    if returncode != 0 and not failures:
        return Result(feature, MISSING, "no throwaway network namespace: "
                      + (" ".join(output.split()) or f"unshare exited {returncode}"),
                      "a kernel with network namespaces (CONFIG_NET_NS)")
    tags = {n: tag for n, (tag, _) in enumerate(LINK_PROBE, start=1)}
    mine = [failures[n] for n, tag in tags.items() if tag == feature and n in failures]
    if mine:
        return Result(feature, MISSING, f"`ip link add type {feature}` refused: {mine[0]}",
                      KERNEL_FIX[feature])
    # A veth joining the bridge, once both were made: the bridge's part.
    attach = [failures[n] for n, tag in tags.items() if tag == "attach" and n in failures]
    if feature == "bridge" and attach and not set(failures) - {n for n, t in tags.items() if t == "attach"}:
        return Result(feature, MISSING, f"a veth cannot join a bridge: {attach[0]}", KERNEL_FIX[feature])
    return Result(feature, OK, f"a {feature} made in a throwaway network namespace")


def nft_error(output: str) -> str:
    """nft's first error and the rule it points at:
    "/dev/stdin:4:20-22: Error: Could not process rule: ..." then the rule, then carets."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if "Error:" in line:
            said = line.split("Error:", 1)[1].strip()
            rule = lines[index + 1].strip() if index + 1 < len(lines) else ""
            return f"{said}: `{rule}`" if rule and set(rule) - set("^~ ") else said
    return " ".join(output.split())


def judge_nf_tables(probe: tuple | None) -> Result:
    name = "nf_tables"
    if probe is None:
        return Result(name, WARN, "not tried: it takes root (a throwaway network namespace)")
    returncode, output = probe
    if returncode == 0:
        return Result(name, OK, "a firewall ruleset (conntrack, limit, NFLOG) loads in a throwaway "
                                "network namespace")
    if returncode in (127, -1):
        return Result(name, MISSING, "not tried: nft or unshare not found", "apt-get install nftables")
    return Result(name, MISSING, f"the kernel refused a firewall ruleset: {nft_error(output) or returncode}",
                  "a kernel with nf_tables and its ct, limit and log expressions and NFLOG "
                  "(CONFIG_NF_TABLES_INET, NFT_CT, NFT_LIMIT, NFT_LOG, NETFILTER_NETLINK_LOG), "
                  "or `modprobe nf_tables`")


def version_of(pattern: str, text: str | None) -> tuple | None:
    found = re.search(pattern, text or "")
    return tuple(int(x or 0) for x in found.groups()) if found else None


def nft_version(text: str | None) -> tuple | None:
    """`nft --version`: "nftables v1.0.6 (Lester Gooch #5)" -> (1, 0, 6)."""
    return version_of(r"nftables v(\d+)\.(\d+)(?:\.(\d+))?", text)


def iproute2_version(text: str | None) -> tuple | None:
    """`ip -V`: "ip utility, iproute2-6.1.0, libbpf 1.1.0" -> (6, 1, 0); old ones say iproute2-ss190107."""
    return version_of(r"iproute2-v?(\d+)\.(\d+)(?:\.(\d+))?", text)


def judge_version(name: str, text: str | None, parse, tested: tuple, package: str, uses: str) -> Result:
    fix = f"apt-get install {package} (./setup.sh installs it)"
    if text is None:
        return Result(name, MISSING, f"not installed ({uses})", fix)
    found = parse(text)
    tested_shown = ".".join(map(str, tested))
    if found is None:
        return Result(name, WARN, f"unknown version ({text.strip()[:60]!r}); tested from {tested_shown}")
    shown = ".".join(map(str, found))
    if found < tested:
        return Result(name, WARN, f"{shown}, older than Debian 12's {tested_shown}, the oldest tested "
                                  f"({uses})", f"a newer {package} (Debian 12 or 13)")
    return Result(name, OK, f"{shown} ({uses})")


def judge_nftables(text: str | None) -> Result:
    return judge_version("nftables", text, nft_version, NFTABLES_TESTED, "nftables",
                         "the firewalls' rulesets, checked with nft -c")


def judge_iproute2(text: str | None) -> Result:
    return judge_version("iproute2", text, iproute2_version, IPROUTE2_TESTED, "iproute2",
                         "ip netns, ip -n, ip -batch")


def setup_sh_packages(text: str) -> list:
    """The words of setup.sh's `packages=( ... )` array, in order."""
    found = re.search(r"^packages=\((.*?)^\)", text, re.S | re.M)
    if not found:
        return []
    return [word for line in found.group(1).splitlines() for word in line.split("#")[0].split()]


def judge_packages(essential: list, extra: list, installed: set, from_setup: bool) -> Result:
    """One line for every Debian package missing: `up`'s own make it missing, the rest
    (setup.sh's, for the tests and exports) a warning."""
    lacking = [p for p in essential if p not in installed]
    others = [p for p in extra if p not in installed and p not in essential]
    fix = ("run ./setup.sh" if from_setup else
           "apt-get install --no-install-recommends " + " ".join(lacking + others))
    if lacking:
        more = f" (and, for the tests and exports, {', '.join(others)})" if others else ""
        return Result("packages", MISSING, f"not installed: {', '.join(lacking)}{more}", fix)
    if others:
        return Result("packages", WARN, "not installed, needed by the tests and exports only: "
                                        + ", ".join(others), fix)
    count = len(set(essential) | set(extra))
    where = "setup.sh installs" if from_setup else "the deployment needs"
    return Result("packages", OK, f"all {count} that {where}")


def judge_locks(run_lock_dir: bool, var_lock: str, var_lock_real: str | None,
                run_lock_real: str = "/run/lock",
                trees=("etc", "var", "run", "root", "home", "tmp")) -> Result:
    """var_lock: "symlink", "dir", "absent" or "other"; var_lock_real: where it resolves."""
    name = "locks"
    if not run_lock_dir:
        return Result(name, MISSING, "no /run/lock (services' lock files: apache2's, ...)",
                      "mkdir -m 1777 /run/lock")
    if var_lock == "absent":
        return Result(name, MISSING, "no /var/lock", "ln -s /run/lock /var/lock")
    if var_lock == "dir":
        return Result(name, OK, "/var/lock is a directory (each host has its own, in its copy of /var)")
    if var_lock == "symlink" and var_lock_real == run_lock_real:
        return Result(name, OK, "/var/lock -> /run/lock")
    own = var_lock == "symlink" and var_lock_real and any(
        var_lock_real == f"/{t}" or var_lock_real.startswith(f"/{t}/") for t in trees)
    if own:
        return Result(name, OK, f"/var/lock -> {var_lock_real} (in a tree each host has its own copy of)")
    return Result(name, MISSING, f"/var/lock is {var_lock_real or 'not a directory'}: lab hosts would "
                                 "share the machine's lock files", "ln -sfn /run/lock /var/lock")


def judge_cgroups(layout) -> Result:
    """layout: what quizstack.lab.cgroups.detect() returned, or a string saying why there is none."""
    name = "cgroups"
    if isinstance(layout, str):
        return Result(name, WARN, f"{layout} (only the chaos faults freeze, slow, kill need cgroups)")
    lacking = {}
    for kind in FAULT_KINDS:
        why = layout.missing(kind)
        if why:
            lacking.setdefault(why, []).append(kind)
    if lacking:
        said = "; ".join(f"{' and '.join(kinds)}: {why}" for why, kinds in lacking.items())
        return Result(name, WARN, f"{layout.kind}: {said} (only those chaos faults need it)")
    return Result(name, OK, f"{layout.kind}: what the faults freeze, slow and kill need")


def judge_programs(name: str, programs: dict, present: set, needed_by: str) -> Result:
    """programs: {program: Debian package}; present: the programs found."""
    lacking = [p for p in programs if p not in present]
    if lacking:
        packages = sorted({programs[p] for p in lacking})
        return Result(name, WARN, f"no {', '.join(os.path.basename(p) for p in lacking)} "
                                  f"(only {needed_by} need it)",
                      f"apt-get install {' '.join(packages)} (./setup.sh installs it)")
    return Result(name, OK, ", ".join(os.path.basename(p) for p in programs))


def port_users(ss_text: str) -> list:
    """`ss -Hltnp` lines -> ["python3 (pid 123)", ...]."""
    found = re.findall(r'\("([^"]+)",pid=(\d+)', ss_text or "")
    return sorted({f"{name} (pid {pid})" for name, pid in found})


def judge_port(port: int, free: bool, lab: str | None, ss_text: str = "") -> Result:
    name = f"port {port}"
    where = f"127.0.0.1:{port}"
    if free:
        return Result(name, OK, f"{where} is free (the service's forward)")
    if lab:
        return Result(name, OK, f"{where} is lab {lab}'s forward")
    users = port_users(ss_text)
    held = f"taken by {', '.join(users)}" if users else "taken by another program"
    return Result(name, WARN, f"{where} is {held}: `up` cannot open its forward there",
                  "`quizstack up --port N`, or stop what holds it")
