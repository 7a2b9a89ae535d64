"""The lab's side of full-system hosts: their files, their boot, the door, their end.

Called by Lab (lab.py) for the hosts whose scenario kind is "system"; see
system.py for the keeper that runs each one and sysimage.py for the base.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from quizstack import debian
from quizstack.errors import LabError
from quizstack.lab import cgroups, plan, procs, render, state as statefile, sysimage, system

BOOT_TIMEOUT = 60.0
DOOR_TIMEOUT = 10.0
STOP_TIMEOUT = 30.0
PROPAGATE = "/run/systemd/nspawn/propagate"


def door_dir(lab) -> Path:
    return lab.state_dir / "door"


def ensure_door(lab, st: dict, progress) -> dict:
    """The proxy to the machine's Debian mirrors, started if it is not running."""
    rec = st.get("door")
    if procs.alive(rec):
        return rec
    where = door_dir(lab)
    where.mkdir(parents=True, exist_ok=True)
    sock = where / sysimage.DOOR_SOCKET
    mirrors = sysimage.machine_mirrors()
    argv = [sys.executable, "-c", "import sys; from quizstack.lab.aptproxy import main; sys.exit(main())",
            str(sock)] + mirrors
    with open(lab.state_dir / "door.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    rec = procs.record(proc.pid)
    st["door"] = rec
    lab._save(st)
    deadline = time.monotonic() + DOOR_TIMEOUT
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"lab {lab.name}: the package door did not open (see "
                           f"{lab.state_dir / 'door.log'})")
        time.sleep(0.05)
    progress(f"door: package proxy to {', '.join(mirrors)} (pid {proc.pid})")
    return rec


def close_door(lab, st: dict):
    rec = st.pop("door", None)
    if procs.signal_record(rec, signal.SIGTERM):
        if procs.wait_gone([rec], time.monotonic() + 5):
            procs.kill_all([rec])


def _write(path: Path, text: str, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def prepare(lab, topo, host):
    """The host's own files on its layer: name, hosts, identity, host keys, operator key."""
    upper = lab._host_dir(host.name) / "system" / "upper"
    _write(upper / "etc/hostname", render.etc_hostname(host))
    _write(upper / "etc/hosts", render.etc_hosts(topo, lab.name))
    machine_id = upper / "etc/machine-id"
    if not machine_id.exists() or not machine_id.read_text().strip():
        _write(machine_id, uuid.uuid4().hex + "\n", 0o444)
    if not list((upper / "etc/ssh").glob("ssh_host_*_key")):
        (upper / "etc/ssh").mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-A", "-f", str(upper)], check=True, capture_output=True)
    operator = lab.state_dir / "secrets" / "ssh" / "operator_rsa.pub"
    if operator.exists():
        keys = upper / "root/.ssh/authorized_keys"
        keys.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(keys.parent, 0o700)
        _write(keys, operator.read_text(), 0o600)



def set_forwarding(lab, host):
    """A router's forwarding, set from outside: /proc/sys is read-only in the system,
    and the setting belongs to the lab's namespace, so it outlives the system's reboots."""
    netns = plan.netns_path(plan.host_netns(lab.name, host.name))
    subprocess.run(["nsenter", f"--net={netns}", "sysctl", "-q", "-w",
                    f"net.ipv4.ip_forward={1 if host.forward else 0}"], check=True)


def boot(lab, topo, st: dict, hosts, progress) -> dict:
    """Start the keepers of these hosts; returns {name: init record}."""
    bases = {}
    for host in hosts:
        release = debian.release_of(host)
        if release not in bases:
            bases[release] = sysimage.ensure_base(progress, release=release)
    ensure_door(lab, st, progress)
    records = {}
    for host in hosts:
        base = bases[debian.release_of(host)]
        prepare(lab, topo, host)
        set_forwarding(lab, host)
        spec = system.spec_for(lab.name, host.name, lab._host_dir(host.name), base,
                               plan.netns_path(plan.host_netns(lab.name, host.name)), door_dir(lab))
        rec = dict(system.start(spec), system=True, cgroup=spec["cgroup"])
        statefile.add_created(st, {"kind": "system-cgroup", "path": spec["cgroup"],
                                   "machine": spec["machine"]})
        with open(lab._host_dir(host.name) / "init.json", "w") as f:
            json.dump(rec, f)
        records[host.name] = rec
        progress(f"host {host.name}: booting {debian.release(debian.release_of(host)).name} "
                 f"(keeper pid {rec['pid']})")
    lab._save(st)
    return records


def wait_booted(lab, records: dict, progress, timeout=BOOT_TIMEOUT):
    """Until every system says it is running (or degraded: booted, a unit failed)."""
    deadline = time.monotonic() + timeout
    for name, rec in records.items():
        state = "no init yet"
        while time.monotonic() < deadline:
            if not procs.alive(rec):
                raise LabError(f"lab {lab.name}: host {name}: its keeper died: "
                               f"{console_tail(lab, name)}")
            if system.system_init(rec["pid"]) is not None:
                done = lab.run(name, ["systemctl", "is-system-running"], check=False, timeout=10)
                state = done.stdout.strip() or state
                if state in ("running", "degraded"):
                    break
            time.sleep(0.1)
        else:
            raise LabError(f"lab {lab.name}: host {name} not booted after {timeout:.0f} s "
                           f"(systemd says {state}): {console_tail(lab, name)}")
        progress(f"host {name}: systemd {state}")


def console_tail(lab, name: str) -> str:
    try:
        lines = (lab._host_dir(name) / "console.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in lines[-3:])


def init_pid(lab, host: str, rec: dict) -> int:
    pid = system.system_init(rec["pid"])
    if pid is None:
        raise LabError(f"lab {lab.name}: host {host} is between boots (rebooting); try again")
    return pid


def stop(records: list[dict], timeout=STOP_TIMEOUT) -> list[dict]:
    """Power systems off cleanly (the keepers turn SIGTERM into a poweroff)."""
    for rec in records:
        procs.signal_record(rec, signal.SIGTERM)
    return procs.wait_gone(records, time.monotonic() + timeout)


def power_cut(rec: dict, timeout: float, then=None) -> list[dict]:
    """Every process of the host's cgroup SIGKILLed; returns those alive after `timeout`.

    Where the v2 hierarchy has cgroup.kill, one write kills the whole tree at
    once, a process forking meanwhile included; the keeper and every process
    found get their own SIGKILL as well, the keeper first (on a machine
    without cgroup.kill that is all there is). `then` runs once every signal
    is queued: a task frozen by the v1 freezer dies only once thawed.
    """
    layout = cgroups.detect()
    victims = [rec] + [r for pid in system.cgroup_pids(rec["cgroup"]) if (r := procs.record(pid))]
    tree = layout.v2 + rec["cgroup"] if layout.v2 else None
    if layout.cgroup_kill and tree and os.path.isdir(tree):
        cgroups.kill(tree)
    for victim in victims:
        procs.signal_record(victim, signal.SIGKILL)
    if then is not None:
        then()
    return procs.wait_gone(victims, time.monotonic() + timeout)


def remove_cgroups(st: dict) -> int:
    """The systems' cgroups, and nspawn's leftovers on the machine's side (after a power cut)."""
    removed = 0
    for entry in list(statefile.created(st, "system-cgroup")):
        shutil.rmtree(f"{PROPAGATE}/{entry.get('machine', '-')}", ignore_errors=True)
        if system.remove_cgroup(entry["path"]):
            statefile.remove_created(st, entry)
            removed += 1
    return removed
