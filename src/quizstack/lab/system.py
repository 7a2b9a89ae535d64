"""Full-system lab hosts: whole Debian systems with systemd as init (systemd-nspawn).

A namespace host (boot.py) shares the machine's /usr and runs supervisord; a
full-system host boots its own Debian from a copy-on-write layer over the
cached base (sysimage.py), in the network namespace the lab made for it, so it
sits on the lab's networks like any other host and has no route out.

Each host has a **keeper**: a small process of the machine (`python -m
quizstack.lab.system keep SPEC`) that mounts the host's overlay, runs
systemd-nspawn, boots it again when the system reboots (nspawn exits with
133), and unmounts when the system powers off. The lab records the keeper
(pid and start time) as the host's init record; the system's own PID 1 is
the keeper's grandchild. The keeper and everything below it live in a cgroup
of their own, /quizstack/<lab>/<host> in every hierarchy nspawn uses (the v2
one and, on v1 and hybrid machines, name=systemd; cgroups.py finds them at
run time), so a power cut kills exactly the host's processes, a v2 freeze
stops exactly them, and two hosts never share nspawn's `payload` group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from quizstack.lab import cgroups

NSPAWN = "systemd-nspawn"
REBOOT_STATUS = 133


def cgroup_dir(lab: str, host: str) -> str:
    """The host's cgroup, relative to each hierarchy's root."""
    return f"/quizstack/{lab}/{host}"


def cgroup_roots(layout: cgroups.Layout | None = None) -> list[str]:
    """The hierarchies a keeper joins. nspawn places the system in <its own
    cgroup>/payload, read from the v2 hierarchy (/sys/fs/cgroup on a v2
    machine, /sys/fs/cgroup/unified on a hybrid one) and, where systemd's
    v1 name=systemd hierarchy is mounted, made there too: the keeper joins both."""
    layout = layout or cgroups.detect()
    return [root for root in (layout.v2, layout.v1.get("name=systemd")) if root]


def cgroup_paths(relative: str, layout: cgroups.Layout | None = None) -> list[str]:
    return [root + relative for root in cgroup_roots(layout) if os.path.isdir(root)]


def machine_name(lab: str, host: str) -> str:
    return f"qs-{lab}-{host}"


def spec_for(lab: str, host: str, hostdir: Path, base: Path, netns: str, door: Path) -> dict:
    """What the keeper needs, as JSON-able data (pure)."""
    return {
        "lab": lab, "host": host, "machine": machine_name(lab, host),
        "base": str(base), "upper": str(hostdir / "system" / "upper"),
        "work": str(hostdir / "system" / "work"), "root": str(hostdir / "system" / "root"),
        "netns": netns, "door": str(door), "cgroup": cgroup_dir(lab, host),
        "log": str(hostdir / "console.log"),
    }


def nspawn_argv(spec: dict) -> list[str]:
    """systemd-nspawn booting the host's tree in the lab's namespace for it (pure)."""
    from quizstack.lab.sysimage import DOOR_DIR

    return [NSPAWN, "--quiet", "--boot", "--register=no", "--keep-unit",
            f"--machine={spec['machine']}", f"--directory={spec['root']}",
            f"--network-namespace-path={spec['netns']}", "--resolv-conf=off",
            "--timezone=off", "--link-journal=no", "--console=pipe",
            f"--bind-ro={spec['door']}:{DOOR_DIR}",
            "--capability=CAP_NET_ADMIN,CAP_SYS_ADMIN,CAP_SYS_RESOURCE,CAP_IPC_LOCK",
            # FUSE, for the app servers' GlusterFS mount.
            "--bind=/dev/fuse"]


def nspawn_env() -> dict:
    """nspawn's environment: /proc/sys/net writable in the system (the roles set
    network sysctls, as on any host; they are the host's own namespace's), the
    rest of /proc/sys and /sys read-only as usual."""
    return dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")


def _mounted(path: str) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def _mount_overlay(spec: dict):
    for key in ("upper", "work", "root"):
        os.makedirs(spec[key], exist_ok=True)
    if not _mounted(spec["root"]):
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={spec['base']},upperdir={spec['upper']},workdir={spec['work']}",
                        spec["root"]], check=True)


def _umount(spec: dict):
    if _mounted(spec["root"]):
        subprocess.run(["umount", spec["root"]], check=False)
    # nspawn's own leftover on the machine's side, named after the machine.
    subprocess.run(["rm", "-rf", f"/run/systemd/nspawn/propagate/{spec['machine']}"], check=False)


def _join_cgroup(relative: str):
    for path in cgroup_paths(relative):
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))


def keep(spec: dict) -> int:
    """The keeper's life: boot, boot again on reboot, stop on poweroff or SIGTERM."""
    _join_cgroup(spec["cgroup"])
    _mount_overlay(spec)
    child = None
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            # nspawn turns SIGTERM into a clean poweroff of the system.
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    boots = 0
    try:
        while not stopping:
            boots += 1
            print(f"keeper: boot {boots} of {spec['machine']}", flush=True)
            with open(os.devnull) as devnull:
                child = subprocess.Popen(nspawn_argv(spec), stdin=devnull, env=nspawn_env())
            status = child.wait()
            print(f"keeper: nspawn exited with {status}", flush=True)
            if status != REBOOT_STATUS:
                break
    finally:
        _umount(spec)
    return 0 if status in (0, REBOOT_STATUS) or stopping else 1


def start(spec: dict, python=sys.executable) -> dict:
    """Start a detached keeper; returns its record {pid, start}."""
    from quizstack.lab import procs

    os.makedirs(os.path.dirname(spec["log"]), exist_ok=True)
    log = open(spec["log"], "ab")
    argv = [python, "-c", "import sys; from quizstack.lab.system import main; sys.exit(main())",
            "spawn", json.dumps(spec)]
    with log:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=log, timeout=30)
    pid = int(done.stdout.decode().strip() or 0)
    rec = procs.record(pid) if pid else None
    if rec is None:
        raise OSError(f"keeper of {spec['host']} did not start (see {spec['log']})")
    return rec


def system_init(keeper_pid: int) -> int | None:
    """The system's PID 1 (as the machine sees it): the keeper's nspawn's child."""
    nspawn = _children(keeper_pid)
    if not nspawn:
        return None
    inits = _children(nspawn[0])
    return inits[0] if inits else None


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def cgroup_pids(relative: str) -> list[int]:
    """Every process in a host's cgroup and below it."""
    found: list[int] = []
    for dirpath, _, files in (w for p in cgroup_paths(relative) for w in os.walk(p)):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    found += [int(x) for x in f.read().split()]
            except OSError:
                pass
    return sorted(set(found))


def remove_cgroup(relative: str) -> bool:
    """Remove a host's cgroup trees once empty (bottom up); True if they are gone."""
    gone = True
    for path in cgroup_paths(relative):
        if not os.path.isdir(path):
            continue
        for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                gone = False
                break
        # The lab's and quizstack's own levels, when nothing else is left in them.
        for parent in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
            try:
                os.rmdir(parent)
            except OSError:
                break
    return gone


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("spawn", "keep"):
        print("usage: python -m quizstack.lab.system spawn|keep SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(argv[1])
    if argv[0] == "spawn":
        # Detach: a new session, and the keeper is a grandchild that nobody waits for.
        pid = os.fork()
        if pid:
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)
        os.setsid()
        keeper = os.fork()
        if keeper:
            print(keeper, flush=True)
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        log = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        try:
            code = keep(spec)
        except BaseException as exc:   # the keeper's last words go to its log
            print(f"keeper: {exc!r}", flush=True)
            code = 1
        os._exit(code)
    return keep(spec)


if __name__ == "__main__":
    sys.exit(main())
