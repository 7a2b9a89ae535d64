"""A Compose export, run on this machine: a Docker daemon of its own, hermetic, and its teardown.

`up` makes a network namespace (no address, no route: nothing leaves it),
starts Debian's dockerd inside it with its own data root, exec root, pid
file and socket under the project's state folder, no iptables (the machine's
firewall is not touched), no IP forwarding between the project's networks
and no default bridge; dockerd runs under tini as a subreaper (so the
containerd shims it spawns are reaped by a process of ours) in a mount
namespace of its own (its overlays never show on the machine). Then it
imports the base image, builds QUIZ's image without network, runs
`docker-compose up -d`, and waits until every container is healthy.

`down` removes everything in reverse: the containers, networks and volumes,
dockerd by its PID (and any process left that names the state folder), the
cgroups made under the project's name, the namespace, the files dockerd
and containerd left outside the state folder when they were not there
before, and the state folder itself. It finishes whatever state a crash
left, and says what it removed.

The service is published on 127.0.0.1 of the daemon's namespace; `check`
runs the HTTP checks of `quizstack check` there (the client module, as a
process entered into that namespace) and looks into the database container.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from quizstack.errors import CommandError, QuizstackError
from quizstack.export import compose, compose_image
from quizstack.lab import cgroups

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"
COMPOSE = "/usr/bin/docker-compose"
TINIS = ("/usr/bin/tini-static", "/usr/bin/tini")
TOOLS = {DOCKERD: "docker.io", DOCKER: "docker.io", COMPOSE: "docker-compose",
         "/usr/bin/mmdebstrap": "mmdebstrap", "/usr/bin/nsenter": "util-linux",
         "/usr/bin/unshare": "util-linux"}
# Files dockerd and containerd write outside the state folder whatever their flags say.
OUTSIDE = ("/etc/docker/key.json", "/run/containerd/s", "/run/containerd")
# Which of those a project's daemon made (they are shared: removed with the last daemon).
OUTSIDE_MADE = "/run/quizstack-compose-made.json"
CGROUP_PREFIX = "quizstack-compose-"
READY_TIMEOUT = 60
HEALTHY_TIMEOUT = 240


class ComposeError(QuizstackError):
    """The Compose project could not be brought up, checked or torn down."""


def _alive(pid):
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Project:
    """One exported directory and the daemon that runs it here."""

    def __init__(self, directory, state_root=None):
        self.dir = Path(directory).resolve()
        path = self.dir / compose.META
        try:
            self.meta = json.loads(path.read_text())
        except FileNotFoundError:
            raise ComposeError(f"{self.dir}: not a Compose export (no {compose.META}; "
                               "run `quizstack export compose SCENARIO -o DIR` first)") from None
        except (OSError, ValueError) as exc:
            raise ComposeError(f"{path}: unreadable ({exc})") from None
        self.name = self.meta["name"]
        root = Path(state_root or os.environ.get("QUIZSTACK_STATE_ROOT") or "/srv/quizstack")
        self.state = root / "compose" / self.name     # not */state.json: labs are listed by that
        self.netns = f"qsc-{self.name}"
        self.netns_path = f"/run/netns/{self.netns}"
        self.cgroup = f"{CGROUP_PREFIX}{self.name}"
        self.socket = self.state / "docker.sock"
        self.port = int(self.meta["port"])
        self.url = f"http://127.0.0.1:{self.port}/"

    # -- records -----------------------------------------------------------------------

    def _record(self):
        try:
            return json.loads((self.state / "record.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, record):
        self.state.mkdir(parents=True, exist_ok=True)
        tmp = self.state / "record.json.new"
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.state / "record.json")

    def env(self):
        return dict(os.environ, DOCKER_HOST=f"unix://{self.socket}",
                    DOCKER_CONFIG=str(self.state / "client"), COMPOSE_PROJECT_NAME=self.name)

    def run(self, where, argv, timeout=600, check=True, **kw):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=self.env(), **kw)
        if check and done.returncode != 0:
            raise CommandError(where, argv, done.returncode, done.stdout + done.stderr)
        return done

    def compose(self, *args, timeout=600, check=True):
        return self.run("docker-compose", [COMPOSE, "--no-ansi", "-p", self.name, "-f",
                                           str(self.dir / "docker-compose.yml"), "--project-directory",
                                           str(self.dir), *args], timeout=timeout, check=check)

    # -- the daemon --------------------------------------------------------------------

    def _dockerd_pid(self):
        try:
            pid = int((self.state / "dockerd.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and "dockerd" in _cmdline(pid) and str(self.state) in _cmdline(pid) \
            else None

    def _ping(self):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.socket))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return b" 200 " in s.recv(1024).split(b"\r\n", 1)[0] + b" "
        except OSError:
            return False

    def running(self):
        return bool(self._dockerd_pid()) and self._ping()

    def _start_dockerd(self, progress):
        record = self._record()
        if self.running():
            return
        if not os.path.exists(self.netns_path):
            self.run("network namespace", ["ip", "netns", "add", self.netns])
            record["netns"] = self.netns
            self._save(record)
        self.run("network namespace", ["nsenter", f"--net={self.netns_path}", "ip", "link", "set",
                                       "lo", "up"])
        made = _read_made()
        for path in OUTSIDE:
            if not os.path.exists(path) and path not in made:
                made.append(path)
        _write_made(made)
        (self.state / "client").mkdir(parents=True, exist_ok=True)
        (self.state / "daemon.json").write_text("{}\n")
        tini = next((t for t in TINIS if os.path.exists(t)), None)
        if tini is None:
            raise ComposeError("tini is not installed (apt-get install tini; docker.io brings it)")
        argv = ["nsenter", f"--net={self.netns_path}", "--",
                "unshare", "--mount", "--propagation", "private", "--",
                tini, "-s", "--", DOCKERD,
                "--config-file", str(self.state / "daemon.json"),
                "--data-root", str(self.state / "data"),
                "--exec-root", str(self.state / "exec"),
                "--pidfile", str(self.state / "dockerd.pid"),
                "--host", f"unix://{self.socket}",
                # The machine's firewall stays as it is; the project's networks
                # are not routed to each other; no docker0.
                "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                "--cgroup-parent", f"/{self.cgroup}"]
        progress(f"dockerd: starting in network namespace {self.netns} (state {self.state})")
        with open(self.state / "dockerd.log", "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, close_fds=True)
        record.update(tini=proc.pid, started=time.time())
        self._save(record)
        deadline = time.monotonic() + READY_TIMEOUT
        while not (self._dockerd_pid() and self._ping()):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.state / "dockerd.log").read_text(errors="replace").splitlines()[-5:]
                raise ComposeError(f"dockerd did not come up in {self.netns}: " + " | ".join(tail))
            time.sleep(0.2)
        record["dockerd"] = self._dockerd_pid()
        self._save(record)

    # -- images ------------------------------------------------------------------------

    def _images(self, progress):
        base = self.meta["base"]
        if self.run("docker image inspect", [DOCKER, "image", "inspect", base], check=False).returncode:
            rootfs = compose_image.base_rootfs(progress)
            progress(f"image: docker import {rootfs.name} as {base}")
            self.run("docker import", [DOCKER, "import", str(rootfs), base])
        compose_image.stage_wheels(self.dir, progress)
        progress(f"image: docker build {self.meta['image']} (no network)")
        self.run("docker build", [DOCKER, "build", "-q", "--network", "none", "-t", self.meta["image"],
                                  str(self.dir / "image")])

    # -- up, health, down --------------------------------------------------------------

    def containers(self):
        """{service: (container id, status, health)} of the project's containers."""
        ids = self.compose("ps", "-q", check=False).stdout.split()
        if not ids:
            return {}
        fmt = ('{{index .Config.Labels "com.docker.compose.service"}} {{.Id}} {{.State.Status}} '
               '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}')
        done = self.run("docker inspect", [DOCKER, "inspect", "-f", fmt, *ids], check=False)
        found = {}
        for line in done.stdout.splitlines():
            service, cid, status, health = line.split()
            found[service] = (cid, status, health)
        return found

    def _unwell(self):
        """What the containers that are not healthy last said (for an error message)."""
        shown = []
        for service, (cid, status, health) in sorted(self.containers().items()):
            if health != "healthy":
                tail = self.run("docker logs", [DOCKER, "logs", "--tail", "3", cid], check=False)
                last = " | ".join((tail.stdout + tail.stderr).strip().splitlines()[-3:])
                shown.append(f"{service} {status}/{health}: {last or 'no output'}")
        return "; ".join(shown) or "every container healthy"

    def wait_healthy(self, timeout=HEALTHY_TIMEOUT):
        wanted = set(self.meta["servers"]) | {self.meta["loadbalancer"], self.meta["database"]} \
            | set(self.meta.get("storage_hosts", []))
        deadline = time.monotonic() + timeout
        while True:
            seen = self.containers()
            if set(seen) >= wanted and all(seen[s][2] == "healthy" for s in wanted):
                return seen
            if time.monotonic() > deadline:
                shown = ", ".join(f"{s} {seen[s][1]}/{seen[s][2]}" if s in seen else f"{s} missing"
                                  for s in sorted(wanted))
                raise ComposeError(f"compose {self.name}: not healthy after {timeout} s: {shown}; "
                                   f"{self._unwell()} (logs: quizstack compose logs {self.dir})")
            time.sleep(1)

    def backends(self):
        """{server: status} as the balancer's HAProxy sees them (its stats socket)."""
        from quizstack.check import parse_haproxy_stat
        from quizstack.stack import _HAPROXY_STAT

        lb = self.containers().get(self.meta["loadbalancer"])
        if not lb:
            return {}
        done = self.run("haproxy stat", [DOCKER, "exec", lb[0], "python3", "-c", _HAPROXY_STAT],
                        timeout=20, check=False)
        return parse_haproxy_stat(done.stdout, "quiz_servers")

    def wait_backends_up(self, timeout=60):
        """Until HAProxy has every server UP, as the lb role waits: healthy containers are
        not yet a balanced service (HAProxy's checks need two answers in a row)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.backends()
            if set(seen) == set(self.meta["servers"]) and all(v.startswith("UP") for v in seen.values()):
                return seen
            if time.monotonic() > deadline:
                shown = ", ".join(f"{k} {v}" for k, v in seen.items()) or "no answer"
                raise ComposeError(f"compose {self.name}: HAProxy does not see every server UP "
                                   f"after {timeout} s: {shown}")
            time.sleep(0.25)

    def up(self, progress=lambda _: None):
        require_tools()
        self.state.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state, 0o700)
        compose.ensure_secrets(self.dir)
        self._start_dockerd(progress)
        self._images(progress)
        progress(f"compose: docker-compose -p {self.name} up -d")
        try:
            self.compose("up", "-d", "--no-build", "--remove-orphans")
        except CommandError as exc:
            raise ComposeError(f"{exc}; {self._unwell()}") from None
        seen = self.wait_healthy()
        self.wait_backends_up()
        return {"url": self.url, "netns": self.netns, "containers": sorted(seen)}

    def forward(self, port):
        """127.0.0.1:port on the machine → the published port, entering the daemon's namespace
        (the lab's own loopback forward: it listens here, then connects from in there)."""
        self.require_running()
        record = self._record()
        if _alive(record.get("forward")) and record.get("forward_port") == port:
            return f"http://127.0.0.1:{port}/"
        self._stop_forward(record)
        argv = [sys.executable, "-m", "quizstack.lab.forward", "--port", str(port),
                "--netns", self.netns_path, "--target", f"127.0.0.1:{self.port}"]
        with open(self.state / "forward.log", "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=log, start_new_session=True, close_fds=True)
        record.update(forward=proc.pid, forward_port=port)
        self._save(record)
        if proc.stdout.readline().strip() != b"ready":
            proc.wait(timeout=10)
            tail = (self.state / "forward.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise ComposeError(f"compose {self.name}: the forward on 127.0.0.1:{port} did not start: "
                               + " ".join(tail))
        proc.stdout.close()
        return f"http://127.0.0.1:{port}/"

    def _stop_forward(self, record):
        pid = record.get("forward")
        if _alive(pid) and "quizstack.lab.forward" in _cmdline(pid) and self.netns_path in _cmdline(pid):
            self._stop([pid], grace=5)
            return True
        return False

    def logs(self, tail="100"):
        self.require_running()
        return self.compose("logs", "--no-color", "--tail", str(tail), check=False).stdout

    def _leftover_processes(self):
        """Processes whose command line names this project's state folder or its
        namespace: only the ones this project started do."""
        marks, found = (str(self.state) + "/", self.netns_path + " "), []
        for entry in os.listdir("/proc"):
            line = _cmdline(entry) if entry.isdigit() and int(entry) != os.getpid() else ""
            if any(mark in line for mark in marks) and _alive(int(entry)):
                found.append(int(entry))
        return found

    def _stop(self, pids, grace):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def down(self, progress=lambda _: None):
        """Remove everything `up` made, from whatever state it is in. Returns what was removed."""
        record = self._record()
        removed = []
        if self._stop_forward(record):
            removed.append("the loopback forward")
        if self.running():
            progress(f"compose: docker-compose -p {self.name} down -v")
            self.compose("down", "-v", "--remove-orphans", "-t", "10", check=False)
            removed.append("containers, networks and volumes")
        dockerd = self._dockerd_pid()
        tini = record.get("tini") if _alive(record.get("tini")) and \
            DOCKERD in _cmdline(record.get("tini")) else None
        if dockerd or tini:
            progress("dockerd: stopping")
            self._stop([p for p in (dockerd,) if p], grace=30)
            self._stop([p for p in (tini,) if p and _alive(p)], grace=5)
            removed.append("dockerd")
        leftovers = self._leftover_processes()
        if leftovers:
            self._stop(leftovers, grace=5)
            removed.append(f"{len(leftovers)} leftover process(es)")
        for mount in reversed(mounts_under(str(self.state))):
            subprocess.run(["umount", "-l", mount], capture_output=True)
            removed.append(f"mount {mount}")
        # The containers' cgroups empty a moment after their last process: a few tries.
        deadline = time.monotonic() + 10
        while True:
            # Wherever the machine mounts them: one v2 hierarchy, or one per v1 controller.
            left = [Path(p) for p in cgroups.detect().named(self.cgroup)]
            for hierarchy in left:
                for folder in sorted((p for p in hierarchy.rglob("*") if p.is_dir()),
                                     reverse=True) + [hierarchy]:
                    try:
                        folder.rmdir()
                    except OSError:
                        pass
            if not cgroups.detect().named(self.cgroup):
                if left:
                    removed.append(f"cgroups {self.cgroup}")
                break
            if time.monotonic() > deadline:
                removed.append(f"cgroups {self.cgroup} (some could not be removed: still in use)")
                break
            time.sleep(0.2)
        if os.path.exists(self.netns_path):
            done = self.run("network namespace", ["ip", "netns", "delete", self.netns], check=False)
            removed.append(f"network namespace {self.netns}" + (
                f" (ip netns delete: {done.stderr.strip()})" if done.returncode else ""))
        if not other_daemons(self.cgroup):
            # The last daemon gone: what the daemons made outside their folders goes too.
            for path in _read_made():
                if not os.path.exists(path):
                    continue
                try:
                    if os.path.isdir(path):
                        os.rmdir(path)        # only when empty
                    else:
                        os.remove(path)
                    removed.append(path)
                except OSError:
                    pass
            if os.path.exists(OUTSIDE_MADE):
                os.remove(OUTSIDE_MADE)
        if self.state.exists():
            shutil.rmtree(self.state)
            removed.append(f"state {self.state}")
        try:
            self.state.parent.rmdir()     # the compose folder of the state root, when it is empty
        except OSError:
            pass
        return removed

    # -- checks ------------------------------------------------------------------------

    def require_running(self):
        if not self.running():
            raise ComposeError(f"compose {self.name}: not up (quizstack compose up {self.dir})")

    def check(self):
        from quizstack.export.compose_check import run_checks

        self.require_running()
        return run_checks(self)


def _read_made():
    try:
        with open(OUTSIDE_MADE) as f:
            return [p for p in json.load(f) if p in OUTSIDE]
    except (OSError, ValueError):
        return []


def _write_made(paths):
    with open(OUTSIDE_MADE + ".new", "w") as f:
        json.dump(sorted(paths, key=OUTSIDE.index), f)
    os.replace(OUTSIDE_MADE + ".new", OUTSIDE_MADE)


def other_daemons(own_cgroup=None):
    """PIDs of the dockerds other Compose projects started here (by their own cgroup flag)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        line = _cmdline(entry)
        if line.startswith(DOCKERD) and f"--cgroup-parent /{CGROUP_PREFIX}" in line \
                and (own_cgroup is None or f"/{own_cgroup} " not in line + " ") and _alive(int(entry)):
            found.append(int(entry))
    return found


def mounts_under(prefix):
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def require_tools():
    if os.geteuid() != 0:
        raise ComposeError("compose up needs root (network namespaces, dockerd)")
    missing = sorted({package for path, package in TOOLS.items() if not os.path.exists(path)})
    if missing:
        raise ComposeError(f"missing Debian packages: {' '.join(missing)} (./setup.sh installs them)")
