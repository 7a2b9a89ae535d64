"""The lab: a topology made real on one machine with Linux namespaces.

Lab is the only place that creates namespaces, links, mounts and processes.
Hosts are network + mount + UTS + IPC + PID namespaces with supervisord as
PID 1 and copy-on-write /etc, /var, /run, /tmp, /root, /home; networks are
bridges in a namespace of the lab's own (see plan.py for names, boot.py for
how a host starts, faults.py for the faults `quizstack chaos` injects,
docs/lab.md for the whole picture).

Every operation takes the lab's lock (flock on <state_dir>/lock), so two
commands never interleave; the lock's descriptor is passed to the helper
processes of an operation, so even after a kill -9 of the caller the next
command waits until those helpers are done.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from quizstack import debian
from quizstack.errors import CommandError, LabError
from quizstack.lab import faults as faultlib, plan, procs, render, state as statefile
from quizstack.lab import cgroups, systemhosts
from quizstack.lab.boot import HOST_ENV, TREES, prepare_layers
from quizstack.topology import Topology, parse_scenario

DEFAULT_STATE_ROOT = "/srv/quizstack"
PING_GROUP_RANGE = "0\t2147483647"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
KILL_TIMEOUT = 10.0
LOCK_TIMEOUT = 180.0

_GET_STATE = (
    b"<?xml version='1.0'?><methodCall><methodName>supervisor.getState"
    b"</methodName><params></params></methodCall>"
)
_RPC_REQUEST = (
    b"POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\n"
    b"Content-Length: " + str(len(_GET_STATE)).encode() + b"\r\n\r\n" + _GET_STATE
)


def _nothing(message):
    pass


def supervisor_ready(pid: int, timeout: float = 0.5) -> bool:
    """True when the host's supervisord answers on its control socket.

    The socket is reached through /proc/<pid>/root, i.e. in the host's own
    mount namespace, exactly where `supervisorctl` inside the host finds it.
    """
    path = f"/proc/{pid}/root{render.SUPERVISOR_SOCKET}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(_RPC_REQUEST)
        data = b""
        while len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return b"RUNNING" in data
    except OSError:
        return False
    finally:
        sock.close()


def wake_supervisor(pid: int):
    """Make supervisord act on a signal now rather than at its next 1 s tick.

    Python retries the poll() a signal interrupts, so supervisord would only
    see its shutdown request when the poll times out; a connection to its
    control socket ends the poll at once.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(0.2)
    try:
        sock.connect(f"/proc/{pid}/root{render.SUPERVISOR_SOCKET}")
    except OSError:
        pass
    finally:
        sock.close()


def existing_labs(state_root=None) -> list[str]:
    """The labs recorded under a state root (default as for Lab), sorted."""
    root = Path(state_root or os.environ.get("QUIZSTACK_STATE_ROOT") or DEFAULT_STATE_ROOT)
    try:
        return sorted(p.parent.name for p in root.glob("*/state.json"))
    except OSError:
        return []


class Lab:
    """A named lab; its state lives in <state_root>/<name>.

    Lab(name, topology=topo) for `up`; other operations reload the topology
    from the copy of the scenario saved in the state directory. The state
    root is, in order: the state_root argument, $QUIZSTACK_STATE_ROOT when the
    Lab is made, /srv/quizstack. (The class attribute is the default as seen
    at import; each instance's state_root is what it uses.)
    """

    state_root = Path(os.environ.get("QUIZSTACK_STATE_ROOT") or DEFAULT_STATE_ROOT)

    def __init__(self, name: str, topology: Topology | None = None, state_root=None):
        self.name = plan.check_lab_name(name)
        root = state_root or os.environ.get("QUIZSTACK_STATE_ROOT") or DEFAULT_STATE_ROOT
        self.state_root = Path(root).absolute()
        self.state_dir = self.state_root / self.name
        self._topology = topology
        # Whether the topology came from the lab's own copy of its scenario.
        self._own_topology = topology is None
        self._topology_stamp = None     # (mtime, size) of the copy the topology was read from
        self._lock_fd = None
        self._forward_proc = None

    def __repr__(self):
        return f"Lab({self.name!r}, state_dir={str(self.state_dir)!r})"

    # -- paths and state -------------------------------------------------------

    @property
    def _state_path(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def _scenario_copy(self) -> Path:
        return self.state_dir / "scenario.toml"

    def _host_dir(self, host: str) -> Path:
        return self.state_dir / "hosts" / host

    @property
    def exists(self) -> bool:
        return self._state_path.exists()

    def _load(self) -> dict | None:
        return statefile.load(self._state_path)

    def _save(self, st: dict):
        statefile.save(self._state_path, st)

    def _require_state(self) -> dict:
        st = self._load()
        if st is None:
            others = [n for n in existing_labs(self.state_root) if n != self.name]
            hint = f" (labs there: {', '.join(others)}; choose one with --lab)" if others else ""
            raise LabError(f"no lab {self.name!r} (in {self.state_dir}); create it with "
                           f"`quizstack up`{hint}")
        return st

    @property
    def scenario_text(self) -> str:
        """The text of the scenario the lab runs (its own copy)."""
        self._require_state()
        return self._scenario_copy.read_text()

    @property
    def topology(self) -> Topology:
        """The lab's scenario. Read from the lab's own copy, and read again when
        the copy changed (another command scaled the lab since)."""
        if self._own_topology and self._scenario_copy.exists():
            stamp = self._scenario_copy.stat()
            stamp = (stamp.st_mtime_ns, stamp.st_size)
            if stamp != self._topology_stamp:
                self._topology = None
                self._topology_stamp = stamp
        if self._topology is None:
            st = self._require_state()
            text = self._scenario_copy.read_text()
            self._topology = parse_scenario(text, source=st.get("source", str(self._scenario_copy)),
                                            default_name=st.get("scenario", self.name))
        return self._topology

    # -- guards ------------------------------------------------------------------

    @staticmethod
    def _require_root():
        if os.geteuid() != 0:
            raise LabError("the lab needs root (namespaces, mounts)")

    def _check_state_root(self):
        """The hosts' overlays cover these trees: their layers must live elsewhere
        (the kernel refuses overlapping layers). /tmp is the exception: a state
        root there (test suites) gives each host a tmpfs /tmp instead."""
        resolved = self.state_root.resolve()
        for tree in TREES:
            if tree == "tmp":
                continue   # allowed: hosts then get a tmpfs /tmp (see boot.py)
            top = Path("/" + tree).resolve()
            if resolved == top or top in resolved.parents:
                raise LabError(
                    f"state root {self.state_root} is inside /{tree}, which lab hosts overlay; "
                    f"use a directory elsewhere (default {DEFAULT_STATE_ROOT}, env QUIZSTACK_STATE_ROOT)"
                )

    @contextlib.contextmanager
    def _locked(self, create=False):
        if create:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        elif not self.state_dir.exists():
            raise LabError(f"no lab {self.name!r} (in {self.state_dir}); create it with `quizstack up`")
        fd = os.open(self.state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LabError(f"lab {self.name} is busy: another quizstack command (or "
                                       f"what it started) holds {self.state_dir / 'lock'}") from None
                    time.sleep(0.05)
            self._lock_fd = fd
            yield
        finally:
            self._lock_fd = None
            os.close(fd)

    # -- commands ------------------------------------------------------------------

    def _run(self, argv, input=None, where=None):
        """Run a helper command, checked; it inherits the lock (see module doc)."""
        fds = (self._lock_fd,) if self._lock_fd is not None else ()
        try:
            proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                                  pass_fds=fds, timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise CommandError(where or f"lab {self.name}", argv, None, "timed out") from exc
        if proc.returncode != 0:
            raise CommandError(where or f"lab {self.name}", argv, proc.returncode,
                               (proc.stdout or "") + (proc.stderr or ""))
        return proc

    def _ip_batches(self, batches: list[tuple[str, str]]):
        """Run several `ip -n NS -batch -` at once (one per namespace)."""
        fds = (self._lock_fd,) if self._lock_fd is not None else ()
        running = []
        for netns, text in batches:
            argv = ["ip", "-n", netns, "-batch", "-"]
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, pass_fds=fds)
            # A batch is a few hundred bytes: it fits the pipe, so every ip
            # gets its whole input now and they all run at once.
            p.stdin.write(text)
            p.stdin.close()
            running.append((netns, argv, p))
        errors = []
        for netns, argv, p in running:
            out = p.stdout.read()
            p.stdout.close()
            p.wait(timeout=60)
            if p.returncode != 0:
                errors.append(CommandError(f"lab {self.name}: netns {netns}", argv, p.returncode, out))
        if errors:
            raise errors[0]

    # -- up --------------------------------------------------------------------------

    def up(self, progress=None):
        """Create whatever is missing and start every host; safe to repeat,
        and finishes a half-done `up` (even one killed with -9)."""
        progress = progress or _nothing
        self._require_root()
        self._check_state_root()
        if self._topology is None and not self.exists:
            # Lab("pfinal").up(): the bundled scenario of that name, if any.
            from quizstack.topology import bundled_scenarios, load_scenario

            if self.name not in bundled_scenarios():
                raise LabError(f"no lab {self.name!r} yet: give its scenario, "
                               f"Lab({self.name!r}, topology=load_scenario(...))")
            self._topology = load_scenario(self.name)
        topo = self.topology
        try:
            # The lab's own scenario is its copy (scaled, it differs from the file).
            text = (self._scenario_copy if self._own_topology and self.exists
                    else Path(topo.source)).read_text()
        except OSError as exc:
            raise LabError(f"{topo.source}: cannot read the scenario: {exc.strerror}") from None
        with self._locked(create=True):
            st = self._load()
            if st is None:
                st = statefile.new_state(self.name, topo.name, str(topo.source))
                self._scenario_copy.write_text(text)
                self._save(st)
                progress(f"lab {self.name}: new, scenario {topo.name} ({len(topo.hosts)} hosts, "
                         f"{len(topo.networks)} networks)")
            elif self._scenario_copy.exists() and self._scenario_copy.read_text() != text:
                raise LabError(
                    f"lab {self.name} exists with another version of scenario {st['scenario']} "
                    f"(saved in {self._scenario_copy}); run `quizstack destroy` first"
                )
            self._ensure_network(topo, st, progress)
            # "The next up repairs everything": faults too, even half-injected ones.
            faultlib.heal(self, st, progress=progress)
            self._start_hosts(topo, st, progress)
            self._restore_forward(topo, st, progress)

    def _ensure_network(self, topo: Topology, st: dict, progress):
        names = plan.all_netns(self.name, topo)
        if st.get("network") == "done":
            if not os.path.exists(plan.netns_path(plan.lab_netns(self.name))):
                raise LabError(f"lab {self.name}: namespace {plan.lab_netns(self.name)} has "
                               "disappeared; run `quizstack destroy`, then `quizstack up`")
            # Hosts the scenario gained (`quizstack scale`, or an interrupted one).
            new = [h for h in topo.hosts.values()
                   if not os.path.exists(plan.netns_path(plan.host_netns(self.name, h.name)))]
            if new:
                self._add_host_network(st, new)
                progress(f"network: {len(new)} host(s) added: {', '.join(h.name for h in new)}")
            return
        recorded = {e["name"] for e in statefile.created(st, "netns")}
        strangers = [n for n in names if n not in recorded and os.path.exists(plan.netns_path(n))]
        if strangers:
            raise LabError(f"lab {self.name}: namespace {strangers[0]} exists but is not recorded in "
                           f"{self._state_path} (a lab of that name under another state root?)")
        # A half-built network (an interrupted up): start it over, it takes ms.
        leftovers = [n for n in reversed(names) if os.path.exists(plan.netns_path(n))]
        if leftovers:
            progress(f"network: removing a half-built network ({len(leftovers)} namespaces)")
            self._kill_in_netns(leftovers)
            self._run(["ip", "-batch", "-"], input="".join(f"netns delete {n}\n" for n in leftovers))
        for n in names:
            statefile.add_created(st, {"kind": "netns", "name": n})
        self._save(st)
        self._run(["ip", "-batch", "-"], input="".join(f"netns add {n}\n" for n in names))
        self._ip_batches([(plan.lab_netns(self.name), plan.bridge_batch(self.name, topo))])
        self._ip_batches([(plan.host_netns(self.name, h.name), plan.host_batch(h))
                          for h in topo.hosts.values()])
        st["network"] = "done"
        self._save(st)
        links = sum(len(h.interfaces) for h in topo.hosts.values())
        progress(f"network: {len(topo.networks)} bridges, {links} links, {len(topo.hosts)} hosts")

    def _add_host_network(self, st: dict, hosts):
        """Namespaces, links (on the running bridges), addresses and routes of new hosts."""
        for host in hosts:
            statefile.add_created(st, {"kind": "netns", "name": plan.host_netns(self.name, host.name)})
        self._save(st)
        self._run(["ip", "-batch", "-"], input="".join(
            f"netns add {plan.host_netns(self.name, h.name)}\n" for h in hosts))
        self._ip_batches([(plan.lab_netns(self.name), plan.links_batch(self.name, hosts))])
        self._ip_batches([(plan.host_netns(self.name, h.name), plan.host_batch(h)) for h in hosts])

    def rescale(self, text: str, progress=None):
        """Give a running lab a new version of its scenario that only adds or
        removes hosts: the removed hosts are powered off and every trace of
        them removed; the added ones are created and booted (by `up`)."""
        progress = progress or _nothing
        self._require_root()
        from quizstack.topology import parse_scenario

        with self._locked():
            st = self._require_state()
            old = self.topology
            new = parse_scenario(text, source=st.get("source", str(self._scenario_copy)),
                                 default_name=st.get("scenario", self.name))
            gone = [h for h in old.hosts if h not in new.hosts]
            for name in gone:
                self._remove_host(st, name, progress)
            self._scenario_copy.write_text(text)
            self._topology = new
            self._own_topology = True
        self.up(progress=progress)

    def _remove_host(self, st: dict, name: str, progress):
        netns = plan.host_netns(self.name, name)
        faultlib.heal(self, st, name, boot=False, progress=progress)
        rec = self._init_record(name)
        if rec and procs.kill_all([rec], KILL_TIMEOUT):
            raise LabError(f"lab {self.name}: host {name}'s init will not die")
        if os.path.exists(plan.netns_path(netns)):
            self._kill_in_netns([netns])
            self._run(["ip", "netns", "delete", netns])
        statefile.remove_created(st, {"kind": "netns", "name": netns})
        statefile.remove_created(st, {"kind": "init", "host": name})
        self._save(st)
        shutil.rmtree(self._host_dir(name), ignore_errors=True)
        progress(f"host {name}: removed")

    def _init_record(self, host: str) -> dict | None:
        try:
            with open(self._host_dir(host) / "init.json") as f:
                rec = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        return rec if rec and rec.get("start") is not None else None

    def _running(self, host: str) -> dict | None:
        rec = self._init_record(host)
        return rec if procs.alive(rec) else None

    def _write_boot_files(self, topo: Topology, host):
        hostdir = self._host_dir(host.name)
        hostdir.mkdir(parents=True, exist_ok=True)
        prepare_layers(str(hostdir))
        etc = hostdir / "upper" / "etc"
        confd = etc / "supervisor" / "conf.d"
        if not confd.exists():
            confd.mkdir(parents=True)
            # Opaque: the machine's own supervisor programs (if any) stay out of the host.
            os.setxattr(confd, "trusted.overlay.opaque", b"y")
        (etc / "supervisor" / "supervisord.conf").write_text(render.supervisord_conf(host.name))
        (etc / "hostname").write_text(render.etc_hostname(host))
        (etc / "hosts").write_text(render.etc_hosts(topo, self.name))

    def _start_hosts(self, topo: Topology, st: dict, progress, only: list[str] | None = None):
        """Boot the hosts that are not running (of `only`, if given: a healed kill)."""
        todo = [h for h in topo.hosts.values()
                if (only is None or h.name in only) and self._running(h.name) is None]
        if not todo:
            if only is None:
                progress(f"hosts: all {len(topo.hosts)} running")
            return
        self._kill_stray_inits([h.name for h in todo])
        for host in todo:
            statefile.add_created(st, {"kind": "init", "host": host.name})
        self._save(st)
        systems = [h for h in todo if h.system]
        todo = [h for h in todo if not h.system]
        if systems:
            booted = systemhosts.boot(self, topo, st, systems, progress)
            systemhosts.wait_booted(self, booted, progress)
        if not todo:
            return
        for host in todo:
            self._write_boot_files(topo, host)
        boot_plan = {
            "sysctls": [{"netns": plan.netns_path(plan.lab_netns(self.name)),
                         "path": f"/proc/sys/net/bridge/{key}", "value": "0"}
                        for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables",
                                    "bridge-nf-call-arptables")]
            # What systemd sets at a real host's boot, in each namespace of its
            # own: anyone may ping (ICMP sockets). Debian 13's ping relies on it,
            # having no raw-socket capability (Nagios's check_ping runs as nagios).
            + [{"netns": plan.netns_path(plan.host_netns(self.name, h.name)),
                "path": "/proc/sys/net/ipv4/ping_group_range", "value": PING_GROUP_RANGE}
               for h in todo],
            "hosts": [{"name": h.name, "dir": str(self._host_dir(h.name)), "forward": h.forward,
                       "netns": plan.netns_path(plan.host_netns(self.name, h.name))}
                      for h in todo],
        }
        # Not `-m quizstack.lab.boot`: this package's __init__ imports boot first.
        argv = [sys.executable, "-c", "import sys; from quizstack.lab.boot import main; sys.exit(main())"]
        fds = (self._lock_fd,) if self._lock_fd is not None else ()
        proc = subprocess.run(argv, input=json.dumps(boot_plan), capture_output=True, text=True,
                              pass_fds=fds, timeout=120)
        try:
            booted = json.loads(proc.stdout or "{}")
        except ValueError:
            booted = {}
        failed = [h.name for h in todo if not booted.get(h.name)]
        if failed:
            detail = self._boot_log_tail(failed[0]) or proc.stderr.strip()[-500:]
            raise LabError(f"lab {self.name}: host {failed[0]} did not boot: {detail}")
        for host in todo:
            progress(f"host {host.name}: started (pid {booted[host.name]['pid']})")
        self._wait_ready({h.name: booted[h.name] for h in todo}, progress)

    def _kill_stray_inits(self, hosts: list[str]):
        """An init that a crash kept from being recorded would run twice: find
        PID 1s of other PID namespaces inside these hosts' netns, and end them."""
        inodes = {procs.netns_inode(plan.netns_path(plan.host_netns(self.name, h))) for h in hosts}
        strays = [r for r in procs.processes_in_netns({i for i in inodes if i})
                  if procs.is_namespace_init(r["pid"])]
        if strays and procs.kill_all(strays, KILL_TIMEOUT):
            raise LabError(f"lab {self.name}: stray inits {[r['pid'] for r in strays]} will not die")

    def _boot_log_tail(self, host: str) -> str:
        try:
            lines = (self._host_dir(host) / "boot.log").read_text().strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-3:])

    def _wait_ready(self, records: dict, progress, timeout=READY_TIMEOUT):
        """Poll every new init's control socket until it answers (no sleeps
        beyond the polling interval), with a deadline."""
        deadline = time.monotonic() + timeout
        waiting = dict(records)
        delay = 0.01
        while waiting:
            for name, rec in list(waiting.items()):
                if not procs.alive(rec):
                    raise LabError(f"lab {self.name}: host {name}: init (pid {rec['pid']}) died: "
                                   f"{self._boot_log_tail(name)}")
                if supervisor_ready(rec["pid"]):
                    del waiting[name]
            if not waiting:
                break
            if time.monotonic() > deadline:
                raise LabError(f"lab {self.name}: hosts not ready after {timeout:.0f} s: "
                               f"{', '.join(waiting)} (supervisord not answering on "
                               f"{render.SUPERVISOR_SOCKET})")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        progress(f"hosts: {len(records)} ready")

    # -- stop / start ------------------------------------------------------------

    def stop(self, progress=None):
        """Power every host off (its init and all in it); keep files and network."""
        progress = progress or _nothing
        self._require_root()
        with self._locked():
            st = self._require_state()
            # A frozen host (or a frozen forward, in its client) would not die;
            # a powered-off lab has no faults: killed hosts stay off, the next
            # boot starts stopped programs.
            faultlib.heal(self, st, boot=False, progress=progress)
            self._kill_forward(st, keep_wanted=True)
            running = {h: r for h in self.topology.hosts if (r := self._running(h))}
            systemhosts.close_door(self, st)
            self._save(st)
            if not running:
                progress("hosts: none running")
                return
            systems = {h: r for h, r in running.items() if r.get("system")}
            if systems:
                # Whole systems power off with systemd's own shutdown, in parallel.
                left = systemhosts.stop(list(systems.values()))
                if left:
                    progress(f"hosts: {len(left)} systems did not power off, cutting their power")
                    for rec in left:
                        systemhosts.power_cut(rec, KILL_TIMEOUT)
                for host in systems:
                    progress(f"host {host}: powered off")
                running = {h: r for h, r in running.items() if h not in systems}
                if not running:
                    return
            # supervisord stops its programs cleanly on SIGTERM, then exits; as
            # PID 1 its exit takes down whatever is left in the host.
            for rec in running.values():
                procs.signal_record(rec, signal.SIGTERM)
            for rec in running.values():
                wake_supervisor(rec["pid"])
            left = procs.wait_gone(list(running.values()), time.monotonic() + STOP_TIMEOUT)
            if left:
                progress(f"hosts: {len(left)} did not stop in {STOP_TIMEOUT:.0f} s, killing them")
                left = procs.kill_all(left, KILL_TIMEOUT)
            if left:
                raise LabError(f"lab {self.name}: init pids {[r['pid'] for r in left]} will not die")
            for host in running:
                progress(f"host {host}: stopped")

    def start(self, progress=None):
        """Power on the hosts that are off, with the files they had."""
        progress = progress or _nothing
        self._require_root()
        with self._locked():
            st = self._require_state()
            topo = self.topology
            if st.get("network") != "done":
                raise LabError(f"lab {self.name} was never completely created; run `quizstack up`")
            self._ensure_network(topo, st, progress)
            faultlib.heal(self, st, progress=progress)
            self._start_hosts(topo, st, progress)
            self._restore_forward(topo, st, progress)

    # -- destroy -------------------------------------------------------------------

    def _kill_in_netns(self, names: list[str]) -> list[dict]:
        inodes = {i for n in names if (i := procs.netns_inode(plan.netns_path(n)))}
        found = procs.processes_in_netns(inodes)
        left = procs.kill_all(found, KILL_TIMEOUT) if found else []
        if left:
            raise LabError(f"lab {self.name}: processes {[r['pid'] for r in left]} will not die")
        return found

    def destroy(self, progress=None):
        """Remove everything the state records, in reverse order; tolerant of
        things already gone. Kills only the lab's own processes."""
        progress = progress or _nothing
        self._require_root()
        if not self.state_dir.exists():
            progress(f"lab {self.name}: nothing to destroy")
            return
        with self._locked():
            st = self._load() or statefile.new_state(self.name, "?", "?")
            # Frozen processes (cgroup v1) ignore SIGKILL until thawed.
            faultlib.thaw_all(st)
            self._kill_forward(st, keep_wanted=False)
            inits = [r for e in statefile.created(st, "init") if (r := self._init_record(e["host"]))]
            left = [x for r in inits if r.get("system")
                    for x in systemhosts.power_cut(r, KILL_TIMEOUT)]
            left += procs.kill_all([r for r in inits if not r.get("system")], KILL_TIMEOUT)
            if left:
                raise LabError(f"lab {self.name}: init pids {[r['pid'] for r in left]} will not die")
            if inits:
                progress(f"hosts: {len(inits)} inits killed")
            netns = [e["name"] for e in statefile.teardown_order(st) if e["kind"] == "netns"]
            # Whatever else lives in the lab's namespaces is the lab's too (a
            # shell entered with `ip netns exec`, an init whose pid a crash lost).
            strays = self._kill_in_netns(netns)
            if strays:
                progress(f"processes: {len(strays)} more killed in the lab's namespaces")
            systemhosts.close_door(self, st)
            cgroups = faultlib.remove_cgroups(self, st) + systemhosts.remove_cgroups(st)
            if cgroups:
                self._save(st)
                progress(f"cgroups: {cgroups} removed")
            self._umount_leftovers()
            existing = [n for n in netns if os.path.exists(plan.netns_path(n))]
            if existing:
                self._run(["ip", "-batch", "-"], input="".join(f"netns delete {n}\n" for n in existing))
                progress(f"network: {len(existing)} namespaces removed")
            shutil.rmtree(self.state_dir)
        progress(f"lab {self.name}: destroyed")

    def _umount_leftovers(self):
        """Mounts of the lab live in the hosts' mount namespaces and vanish with
        them; any under the state dir on the machine's side is removed here."""
        prefix = str(self.state_dir) + "/"
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f]
        for point in reversed(points):
            point = point.replace("\\040", " ")
            if point.startswith(prefix):
                self._run(["umount", "--lazy", point])

    # -- status, entering hosts -------------------------------------------------------

    def status(self) -> dict:
        """Plain data: the lab, its hosts (running, init pid, interfaces, active
        faults), the forward."""
        self._require_root()
        st = self._require_state()
        topo = self.topology
        active = st.get("faults", [])
        hosts = []
        for h in topo.hosts.values():
            rec = self._running(h.name)
            hosts.append({
                "name": h.name,
                "roles": list(h.roles),
                "kind": h.kind,
                # A full system's Debian; a namespace host runs the machine's own.
                "release": debian.release_of(h) if h.system else None,
                "running": rec is not None,
                "pid": rec["pid"] if rec else None,
                "netns": plan.host_netns(self.name, h.name),
                "interfaces": [{"name": i.name, "network": i.network, "address": i.cidr}
                               for i in h.interfaces],
                "faults": [dict(f) for f in active if f["host"] == h.name],
            })
        fwd = st.get("forward")
        forward = None
        if fwd:
            forward = {"url": f"http://127.0.0.1:{fwd['port']}/", "client": fwd["client"],
                       "target": fwd["target"], "running": procs.alive(fwd.get("process")),
                       "also": [{"url": f"http://127.0.0.1:{p}/", "target": t}
                                for p, t in fwd.get("also") or []]}
        layout = cgroups.detect()
        return {"lab": self.name, "scenario": topo.name, "source": topo.source,
                "state_dir": str(self.state_dir), "network": st.get("network") == "done",
                "hosts": hosts, "forward": forward,
                "machine": {"release": debian.machine_release(), "cgroups": layout.kind,
                            "faults_lacking": {k: m for k in ("freeze", "slow", "kill")
                                               if (m := layout.missing(k))}}}

    def init_pid(self, host: str) -> int:
        self.topology.host(host)   # a clear error for an unknown host
        rec = self._running(host)
        if rec is None:
            raise LabError(f"lab {self.name}: host {host} is not running (`quizstack start`)")
        if rec.get("system"):
            return systemhosts.init_pid(self, host, rec)
        return rec["pid"]

    def enter_argv(self, host: str) -> list[str]:
        """argv prefix that runs a command inside the host's namespaces."""
        pid = self.init_pid(host)
        return ["nsenter", "--target", str(pid), "--net", "--mount", "--uts", "--ipc",
                "--pid", "--wdns=/", "--"]

    def host_env(self, extra: dict | None = None) -> dict:
        """The environment of a command run in a host: a clean root login's."""
        env = dict(HOST_ENV)
        if extra:
            env.update(extra)
        return env

    def run(self, host: str, argv, *, input=None, timeout=60, check=True, env=None):
        """Run a command inside a host; text output captured.

        On timeout the whole command (its process group) is killed and a
        CommandError raised; with check=True a non-zero exit raises too.
        """
        self._require_root()
        argv = [str(a) for a in argv]
        full = self.enter_argv(host) + argv
        where = f"{self.name}/{host}"
        proc = subprocess.Popen(full, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.host_env(env), start_new_session=True)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise CommandError(where, argv, None, f"{out}{err}\ntimed out after {timeout} s") from None
        result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise CommandError(where, argv, proc.returncode, (out or "") + (err or ""))
        return result

    def run_network(self, host: str, argv, *, input=None, timeout=60):
        """Run a command of the machine's (its files, its Python) in a host's network
        namespace only: a probe that must stand where the host stands on the networks,
        whatever the host's own files hold (a full system has no quizstack)."""
        self._require_root()
        self.topology.host(host)
        netns = plan.netns_path(plan.host_netns(self.name, host))
        argv = ["nsenter", f"--net={netns}", "--"] + [str(a) for a in argv]
        try:
            return subprocess.run(argv, input=input, capture_output=True, text=True,
                                  timeout=timeout, env=self.host_env())
        except subprocess.TimeoutExpired:
            raise CommandError(f"{self.name}/{host}", argv, None,
                               f"timed out after {timeout} s") from None

    # -- faults (quizstack chaos) -----------------------------------------------------

    def inject(self, kind: str, host: str, **params) -> dict:
        """Inject a fault into a running host: kill, cut, freeze, slow (cpu=PERCENT)
        or stop (service=PROGRAM); returns its record, whose `t` is the wall
        clock when it took full effect. See faults.py."""
        self._require_root()
        with self._locked():
            return faultlib.inject(self, self._require_state(), kind, host, params)

    def heal(self, host: str | None = None, progress=None) -> list[dict]:
        """Undo every active fault (of one host, or all), thaw first; returns the
        healed records, each `t` the wall clock when it was healed."""
        self._require_root()
        with self._locked():
            return faultlib.heal(self, self._require_state(), host, progress=progress)

    def faults(self) -> list[dict]:
        """The active faults (a `t` of None: an injection a crash interrupted)."""
        self._require_root()
        with self._locked():
            return [dict(f) for f in self._require_state().get("faults", [])]

    # -- the loopback forward ---------------------------------------------------------

    def open_forward(self, port: int = 8080, client: str | None = None, also=()) -> str:
        """127.0.0.1:port on the machine -> the load balancer, entering as a client.

        `also`: more (loopback port, "address:port") pairs carried by the same
        forward (Nagios's web interface).
        """
        self._require_root()
        with self._locked():
            st = self._require_state()
            topo = self.topology
            default_client, target_addr = plan.forward_target(topo)
            client = client or default_client
            topo.host(client)
            service_port = int(topo.settings.get("service", {}).get("port", 80))
            want = {"port": int(port), "client": client, "target": f"{target_addr}:{service_port}",
                    "also": [[int(p), str(t)] for p, t in also]}
            return self._open_forward(st, want)

    def _open_forward(self, st: dict, want: dict) -> str:
        url = f"http://127.0.0.1:{want['port']}/"
        current = st.get("forward") or {}
        if procs.alive(current.get("process")) and all(current.get(k) == v for k, v in want.items()):
            return url
        self._kill_forward(st, keep_wanted=False)
        netns = plan.netns_path(plan.host_netns(self.name, want["client"]))
        if not os.path.exists(netns):
            raise LabError(f"lab {self.name}: no network namespace for {want['client']} (run `quizstack up`)")
        st["forward"] = dict(want, process=None)
        statefile.add_created(st, {"kind": "forward"})
        self._save(st)
        log = open(self.state_dir / "forward.log", "ab")
        argv = [sys.executable, "-m", "quizstack.lab.forward", "--port", str(want["port"]),
                "--netns", netns, "--target", want["target"]]
        for port, target in want.get("also") or []:
            argv += ["--also", f"{port}={target}"]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=log, start_new_session=True, close_fds=True)
        finally:
            log.close()
        rec = procs.record(proc.pid)
        st["forward"]["process"] = rec
        self._save(st)
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else b""
        proc.stdout.close()
        if line.strip() != b"ready":
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            st["forward"] = None
            self._save(st)
            tail = (self.state_dir / "forward.log").read_text().strip().splitlines()[-1:]
            raise LabError(f"lab {self.name}: forward on 127.0.0.1:{want['port']} failed: "
                           f"{' '.join(tail) or 'not ready in 10 s'}")
        self._forward_proc = proc
        return url

    def _kill_forward(self, st: dict, keep_wanted: bool):
        fwd = st.get("forward")
        if not fwd:
            return
        rec = fwd.get("process")
        if rec:
            procs.kill_all([rec], KILL_TIMEOUT)
        if self._forward_proc is not None:
            with contextlib.suppress(Exception):
                self._forward_proc.wait(timeout=1)
            self._forward_proc = None
        if keep_wanted:
            fwd["process"] = None
            st["forward"] = fwd
        else:
            st["forward"] = None
        self._save(st)

    def _restore_forward(self, topo: Topology, st: dict, progress):
        fwd = st.get("forward")
        if fwd and not procs.alive(fwd.get("process")):
            want = {k: fwd[k] for k in ("port", "client", "target")}
            want["also"] = fwd.get("also") or []
            url = self._open_forward(st, want)
            progress(f"forward: {url} (as {want['client']})")

    def close_forward(self):
        self._require_root()
        with self._locked():
            st = self._require_state()
            self._kill_forward(st, keep_wanted=False)

    @property
    def forward_url(self) -> str | None:
        st = self._load() or {}
        fwd = st.get("forward")
        if fwd and procs.alive(fwd.get("process")):
            return f"http://127.0.0.1:{fwd['port']}/"
        return None
