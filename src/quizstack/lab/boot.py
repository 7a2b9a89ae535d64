"""Boots lab hosts: run as `python -m quizstack.lab.boot`, a plan as JSON on stdin.

One short-lived process boots every host of a call, so that starting a dozen
hosts costs one interpreter, not a dozen. For each host it forks a child that
joins the host's network namespace (created beforehand by the lab), unshares
new mount, UTS, IPC and PID namespaces and forks again: that grandchild is
PID 1 of the host. It makes its mounts private, mounts a fresh /proc and the
copy-on-write trees over the machine's, sets the host name and forwarding,
and becomes supervisord. The child writes the init's PID (as seen from the
machine) and start time into the host's directory, then exits, so the init
is detached from whoever called the lab. Stdlib only, and no threads: fork
and setns must run single-threaded.

Plan: {"sysctls": [{"netns": PATH, "path": "/proc/sys/...", "value": "0"}],
       "hosts": [{"name": "c1", "netns": PATH, "dir": HOSTDIR, "forward": false}]}
Output on stdout: {"c1": {"pid": 123, "start": 456} | null, ...}
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sys
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

# The copy-on-write trees of a host, over the machine's. /tmp comes last:
# a state directory under /tmp (test suites use one) must still be reachable
# by its real path when the other layers are mounted.
TREES = ("etc", "var", "run", "root", "home", "tmp")
SUPERVISORD = "/usr/bin/supervisord"
SUPERVISORD_CONF = "/etc/supervisor/supervisord.conf"
HOST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def setns(path: str, nstype: int):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


def unshare(flags: int):
    _check(_libc.unshare(flags), "unshare")


def mount(source, target, fstype, flags=0, data=None):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(
        _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {fstype or ''} {target}",
    )


def start_time(pid: int, proc_fd=None):
    try:
        fd = os.open(f"{pid}/stat" if proc_fd is not None else f"/proc/{pid}/stat",
                     os.O_RDONLY, dir_fd=proc_fd)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2:].split()
    return None if fields[0] == b"Z" else int(fields[19])


def write_json(path: str, data, dir_fd=None):
    """Write JSON atomically; with `dir_fd`, `path` is a name in that directory.

    A directory descriptor keeps pointing at the machine's directory even after
    the init, which shares the writer's mount namespace, mounts over /tmp.
    """
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=dir_fd)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def inside_tmp(path: str) -> bool:
    real = os.path.realpath(path)
    return real == "/tmp" or real.startswith("/tmp/")


def prepare_layers(hostdir: str):
    """Upper and work dirs for each tree; /run starts empty at every boot."""
    for tree in TREES:
        upper = os.path.join(hostdir, "upper", tree)
        work = os.path.join(hostdir, "work", tree)
        if tree == "run":
            shutil.rmtree(upper, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
        if not os.path.isdir(upper):
            os.makedirs(upper)
            # The overlay's root takes the upper dir's owner and mode: copy
            # the machine's (/tmp 1777, /root 0700 ...).
            st = os.stat(f"/{tree}")
            os.chown(upper, st.st_uid, st.st_gid)
            os.chmod(upper, st.st_mode & 0o7777)
        os.makedirs(work, exist_ok=True)


def become_init(host: dict):
    """In the new namespaces, as PID 1: mounts, name, then exec supervisord."""
    hostdir = host["dir"]
    log = os.open(os.path.join(hostdir, "boot.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for tree in TREES:
            upper = os.path.join(hostdir, "upper", tree)
            work = os.path.join(hostdir, "work", tree)
            if tree == "tmp" and inside_tmp(hostdir):
                # Layers may not overlap: with the state under /tmp, the host's
                # /tmp is a fresh tmpfs of its own instead of an overlay.
                mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
                continue
            mount("overlay", f"/{tree}", "overlay", 0,
                  f"lowerdir=/{tree},upperdir={upper},workdir={work}")
        mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1" if host["forward"] else "0")
        _check(_libc.sethostname(host["name"].encode(), len(host["name"])), "sethostname")
        os.makedirs("/var/log/supervisor", exist_ok=True)
        os.chdir("/")
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 65536)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execve(SUPERVISORD, ["supervisord", "-n", "-c", SUPERVISORD_CONF], HOST_ENV)
    except BaseException:
        os.write(log, f"boot of {host['name']} failed:\n{traceback.format_exc()}".encode())
        os._exit(1)


def launch(host: dict):
    """Fork the host's init; return its record once the child has written it."""
    record_path = os.path.join(host["dir"], "init.json")
    try:
        os.unlink(record_path)
    except FileNotFoundError:
        pass
    prepare_layers(host["dir"])
    # Opened before the namespaces change: the record lands in the machine's
    # host directory even if the init mounts over its path (a state root in /tmp).
    host_dir_fd = os.open(host["dir"], os.O_RDONLY | os.O_DIRECTORY)
    pid = os.fork()
    if pid != 0:
        os.close(host_dir_fd)
        return pid
    try:
        os.setsid()
        setns(host["netns"], CLONE_NEWNET)
        unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID)
        # The init shares this mount namespace and mounts its own /proc over
        # /proc at once: keep a handle on the machine's /proc to read its record.
        proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
        init = os.fork()
        if init == 0:
            os.close(proc_fd)
            os.close(host_dir_fd)
            become_init(host)
        write_json("init.json", {"pid": init, "start": start_time(init, proc_fd)},
                   dir_fd=host_dir_fd)
        os._exit(0)
    except BaseException:
        sys.stderr.write(f"host {host['name']}: {traceback.format_exc()}")
        os._exit(1)


def set_sysctl(item: dict):
    """Write a sysctl inside a namespace, in a throwaway child."""
    pid = os.fork()
    if pid == 0:
        try:
            setns(item["netns"], CLONE_NEWNET)
            if os.path.exists(item["path"]):
                with open(item["path"], "w") as f:
                    f.write(item["value"])
            os._exit(0)
        except BaseException:
            sys.stderr.write(f"sysctl {item['path']} in {item['netns']}: {traceback.format_exc()}")
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def main():
    # A Ctrl-C meant for the caller must not cut a boot in half.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    plan = json.load(sys.stdin)
    ok = True
    for item in plan.get("sysctls", []):
        ok = set_sysctl(item) and ok
    children = {host["name"]: (launch(host), host) for host in plan.get("hosts", [])}
    result = {}
    for name, (pid, host) in children.items():
        _, status = os.waitpid(pid, 0)
        record = None
        try:
            with open(os.path.join(host["dir"], "init.json")) as f:
                record = json.load(f)
        except FileNotFoundError:
            pass
        if os.waitstatus_to_exitcode(status) != 0 or not record or record.get("start") is None:
            ok = False
            record = None
        result[name] = record
    json.dump(result, sys.stdout)
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
