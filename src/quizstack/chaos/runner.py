"""Running an experiment: load on the clients, a fault, its healing, and the accounting.

The timeline of `quizstack chaos run NAME`:

    load starts on every client ─ warm-up ─ inject ─ (detected) ─ hold ─ heal
    ─ the service converges (pairs settled, servers UP, volume healed) ─ after
    ─ load stops ─ every acknowledged write verified

The load generators (load.py) run inside the client hosts and write their
records to files in the run's folder (<lab state>/chaos/<run>/); the fault
goes through the lab (lab.inject / lab.heal), which records it in the lab's
state first, so an interrupted run (Ctrl-C here, kill -9 anywhere) is healed
by the next `heal`, `up` or `destroy`. Writes are verified where they must
be: listed through the load balancer, served byte for byte by every app
server, present with the same bytes on every brick. Nothing here prints:
`progress` receives short lines, and the result is plain data for the CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from quizstack.chaos import experiments, report, watch
from quizstack.check import admin_login
from quizstack.deploy.plan import build_plan
from quizstack.errors import QuizstackError

READS_STARTED_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


@dataclass
class Settings:
    warmup: float = 5.0          # seconds of load before the fault
    hold: float = 10.0           # seconds the fault lasts
    after: float = 5.0           # seconds of load once the service converged
    rate: float = 20.0           # requests a second, per client
    workers: int = 8             # per client
    writes: float = 0.15         # share of the users' actions that write
    converge_timeout: float = 90.0
    seed: int | None = None


def _nothing(message):
    pass


class LoadProcess:
    """One load generator running inside a client host; its lines go to a file."""

    def __init__(self, lab, host, argv, path: Path, env=None):
        self.host = host
        self.path = path
        self.err_path = path.with_suffix(".err")
        with open(path, "wb") as out, open(self.err_path, "wb") as err:
            # Its stdin is a pipe this process holds: if the runner dies, the
            # load sees the end of it and stops (see load.py --until-eof).
            self.proc = subprocess.Popen(lab.enter_argv(host) + argv + ["--until-eof"],
                                         stdin=subprocess.PIPE, stdout=out, stderr=err,
                                         env=lab.host_env(env), start_new_session=True)

    def lines(self):
        try:
            text = self.path.read_text()
        except OSError:
            return []
        found = []
        for line in text.splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                pass   # a line being written right now
        return found

    def started_reading(self):
        return any(r.get("kind") not in (None, "setup", "login") for r in self.lines())

    def stop(self):
        """Close its lease and SIGTERM it (it prints its last line and exits), then wait."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)

    def error_tail(self):
        try:
            return " | ".join(self.err_path.read_text().strip().splitlines()[-2:])
        except OSError:
            return ""


class Run:
    """One experiment's state: its folder, its loads, its events."""

    def __init__(self, lab, name, settings: Settings, progress=None):
        self.lab = lab
        self.plan = build_plan(lab.topology)
        self.name = name
        self.settings = settings
        self.progress = progress or _nothing
        self.python = f"{sys.prefix}/bin/python"
        self.base = f"http://{self.plan.lb_address}:{self.plan.port}"
        # The load's administrator makes its users; the password goes in the environment.
        self.admin = admin_login(lab.state_dir / "secrets", self.plan)
        self.admin_env = {"QUIZSTACK_PASSWORD": self.admin[1]}
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.id = f"{stamp}-{name}"
        # The load's users are named after the run: unique in the lab's database.
        self.tag = secrets.token_hex(4)
        self.dir = Path(lab.state_dir) / "chaos" / self.id
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.events: list[dict] = []
        self.loads: list[LoadProcess] = []
        self.injected: list[str] = []

    def event(self, kind, label, t=None):
        self.events.append({"t": t if t is not None else time.time(), "kind": kind, "label": label})
        self.progress(f"{kind}: {label}")

    # -- preconditions -------------------------------------------------------------------

    def require_calm(self):
        active = self.lab.faults()
        if active:
            shown = ", ".join(f"{f['kind']} {f['host']}" for f in active)
            raise QuizstackError(f"faults are active ({shown}): `quizstack chaos heal` first")
        seconds, left = watch.wait_converged(self.lab, self.plan, timeout=60)
        if left:
            raise QuizstackError("the service is not in its normal state: " + "; ".join(left))

    # -- the load ------------------------------------------------------------------------

    def start_load(self, seconds):
        s = self.settings
        for index, client in enumerate(self.plan.clients):
            tag = f"{self.tag}{index}"
            argv = [self.python, "-m", "quizstack.chaos.load", "run", "--base", self.base,
                    "--seconds", f"{seconds:.0f}", "--rate", str(s.rate), "--workers", str(s.workers),
                    "--writes", str(s.writes), "--max-requests", str(int(s.rate * seconds * 1.1) + 10),
                    "--name", tag, "--admin", self.admin[0]]
            if s.seed is not None:
                argv += ["--seed", str(s.seed * 100 + index)]
            self.loads.append(LoadProcess(self.lab, client, argv, self.dir / f"{client}.jsonl",
                                          env=self.admin_env))
        deadline = time.monotonic() + READS_STARTED_TIMEOUT
        while not all(load.started_reading() for load in self.loads):
            for load in self.loads:
                if load.proc.poll() is not None:
                    last = (load.lines() or [{}])[-1]
                    raise QuizstackError(f"the load on {load.host} stopped before it began: "
                                         f"{last.get('error') or load.error_tail() or 'no output'}")
            if time.monotonic() > deadline:
                raise QuizstackError("the load did not start within "
                                     f"{READS_STARTED_TIMEOUT:.0f} s (see {self.dir})")
            time.sleep(0.2)
        self.event("load", f"{len(self.loads)} clients, {s.rate:g} requests/s each, "
                           f"{s.writes:.0%} writes")

    def stop_load(self):
        for load in self.loads:
            load.stop()

    def records(self):
        requests, acks = [], []
        for load in self.loads:
            for line in load.lines():
                if "ack" in line:
                    acks.append(line)
                elif "kind" in line:
                    requests.append(dict(line, client=load.host))
        return requests, acks

    # -- faults ----------------------------------------------------------------------------

    def inject(self, kind, host, **params):
        if kind == "switchover":
            # Planned, not a fault: the database's own manager moves the primary.
            from quizstack.stack import db_switchover

            began = time.time()
            _, new = db_switchover(self.lab, self.plan)
            self.event("inject", f"switchover {host} -> {new}", began)
            return {"t": began, "began": began, "planned": True}
        self.injected.append(host)
        fault = self.lab.inject(kind, host, **params)
        what = " ".join([kind, host] + [f"{k}={v}" for k, v in params.items()])
        self.event("inject", what, fault.get("t"))
        return fault

    def heal(self, host):
        healed = self.lab.heal(host)
        self.injected = [h for h in self.injected if h != host]
        t = max((f.get("t") or 0 for f in healed), default=None) or None
        self.event("heal", f"{host} healed", t)

    def detect(self, watched, host, since, until):
        """Poll each detector ({event kind: detector}) until it reports or the time is up."""
        waiting = dict(watched)
        while waiting and time.time() < until:
            for kind, detector in list(waiting.items()):
                seen = detector(self.lab, self.plan, host, since)
                if seen:
                    what, when = seen
                    self.event(kind, what, when)
                    del waiting[kind]
            time.sleep(0.1)

    def converge(self):
        seconds, left = watch.wait_converged(self.lab, self.plan, self.settings.converge_timeout)
        if left:
            self.event("stuck", "not converged after "
                       f"{self.settings.converge_timeout:.0f} s: {'; '.join(left)}")
        else:
            self.event("converged", "pairs settled, every server UP, volume healed")

    def cleanup(self):
        """Whatever happened: the loads stopped, this run's faults healed."""
        self.stop_load()
        for host in list(self.injected):
            with contextlib.suppress(QuizstackError):
                self.heal(host)

    # -- the accounting ----------------------------------------------------------------------

    def verify(self, acks):
        """Every acknowledged write, checked where it must be; returns the lost ones."""
        if not acks:
            return []
        client = self.plan.clients[0]
        stdin = "".join(json.dumps(a) + "\n" for a in acks)
        done = self.lab.run(client, [self.python, "-m", "quizstack.chaos.load", "verify",
                                     "--base", self.base, "--admin", self.admin[0]],
                            input=stdin, check=False, timeout=600, env=self.admin_env)
        try:
            listed = json.loads(done.stdout)
        except ValueError:
            raise QuizstackError(f"{client}: verification failed: "
                                 f"{(done.stderr or done.stdout).strip()[-300:]}") from None
        lost = [dict(m) for m in listed.get("missing", [])]
        images = {int(k): v for k, v in listed.get("images", {}).items()}
        wanted = {a["id"]: a["sha256"] for a in acks if a["ack"] == "quiz"}
        # Bricks first: reading a file through a volume client heals a copy a
        # brick lacks, which would hide that the replication did not hold.
        lost += self._bricks_hold(images, wanted)
        lost += self._servers_serve(images, wanted)
        return lost

    def _servers_serve(self, images, wanted):
        """Each image fetched from every app server directly (from a balancer)."""
        if not images:
            return []
        where = watch.active_balancer(self.lab, self.plan) or self.plan.lb_hosts[0]
        servers = [f"{b.name}=http://{b.address}:{self.plan.app_port}" for b in self.plan.backends]
        argv = [self.python, "-m", "quizstack.chaos.load", "fetch"]
        for server in servers:
            argv += ["--server", server]
        # In the balancer's network namespace only: a full-system balancer has no quizstack.
        done = self.lab.run_network(where, argv, input="".join(f"{n}\n" for n in images.values()),
                                    timeout=600)
        try:
            seen = json.loads(done.stdout)
        except ValueError:
            raise QuizstackError(f"{where}: fetching the images failed: "
                                 f"{(done.stderr or done.stdout).strip()[-300:]}") from None
        lost = []
        for quiz, name in sorted(images.items()):
            wrong = [server for server, hashes in seen.items() if hashes.get(name) != wanted.get(quiz)]
            if wrong:
                lost.append({"ack": "quiz", "id": quiz, "why": f"image {name} not served "
                             f"as sent by {', '.join(sorted(wrong))}"})
        return lost

    def _bricks_hold(self, images, wanted):
        lost = {}
        media = f"{self.plan.brick}/media"
        for nas, _ in self.plan.storage_hosts:
            paths = [f"{media}/{name}" for name in images.values()]
            done = self.lab.run(nas, ["sha256sum", "--", *paths], check=False, timeout=600)
            found = {}
            for line in done.stdout.splitlines():
                digest, _, path = line.partition("  ")
                found[path.rsplit("/", 1)[-1]] = digest
            for quiz, name in images.items():
                if found.get(name) != wanted.get(quiz):
                    lost.setdefault(quiz, []).append(nas)
        return [{"ack": "quiz", "id": quiz, "why": f"image {images[quiz]} missing or different "
                 f"on the brick of {', '.join(where)}"} for quiz, where in sorted(lost.items())]

    def finish(self, extra=None):
        requests, acks = self.records()
        self.progress(f"verify: {len(acks)} acknowledged writes")
        lost = self.verify(acks)
        summary = report.summarize(requests, self.events, acks=acks, lost=lost)
        result = {"experiment": self.name, "run": self.id, "folder": str(self.dir),
                  "settings": asdict(self.settings), "events": self.events,
                  "summary": summary, "lost": lost}
        if extra:
            result.update(extra)
        (self.dir / "result.json").write_text(json.dumps(result, indent=1))
        return result


def run(lab, name, settings=None, progress=None):
    """Run a built-in experiment on a deployed lab; returns the result (see Run.finish)."""
    settings = settings or Settings()
    experiment = experiments.get(name)
    chaos = Run(lab, name, settings, progress)
    chaos.require_calm()
    host = experiment.target(lab, chaos.plan)
    chaos.progress(f"{name}: {experiment.summary}: {host}")
    longest = settings.warmup + settings.hold + settings.converge_timeout + settings.after + 30
    try:
        chaos.start_load(longest)
        time.sleep(settings.warmup)
        fault = chaos.inject(experiment.kind, host, **experiment.params)
        since = fault.get("began") or fault.get("t") or time.time()
        until = (fault.get("t") or time.time()) + settings.hold
        watched = {"detect": experiment.detector}
        if experiment.fence:
            watched["fenced"] = experiment.fence
        chaos.detect(watched, host, since, until)
        time.sleep(max(0.0, until - time.time()))
        if not fault.get("planned"):
            chaos.heal(host)
        chaos.converge()
        time.sleep(settings.after)
    finally:
        chaos.cleanup()
    return chaos.finish({"target": host})


def run_random(lab, minutes, seed, settings=None, progress=None, spare=()):
    """Kill and heal one host at a time, at random (reproducible by seed), under load."""
    settings = settings or Settings()
    settings.seed = seed if settings.seed is None else settings.seed
    chaos = Run(lab, "random", settings, progress)
    candidates, spared = experiments.random_candidates(chaos.plan, spare)
    schedule = experiments.random_schedule(chaos.plan, minutes, seed, spare=spare)
    chaos.require_calm()
    if spared:
        chaos.progress("spared: " + ", ".join(f"{h} ({why})" for h, why in spared.items()))
    longest = minutes * 60 + settings.converge_timeout + settings.after + 60
    try:
        chaos.start_load(longest)
        started = time.time()
        for offset, host, held in schedule:
            if time.time() - started > minutes * 60:
                break
            time.sleep(max(0.0, started + offset - time.time()))
            fault = chaos.inject("kill", host)
            time.sleep(max(0.0, (fault.get("t") or time.time()) + held - time.time()))
            chaos.heal(host)
            chaos.converge()
        time.sleep(settings.after)
    finally:
        chaos.cleanup()
    return chaos.finish({"seed": seed, "minutes": minutes, "schedule": schedule,
                         "spared": spared})


def during(lab, name, action, settings=None, progress=None, label=None):
    """Run `action()` (an operation: a scale, a rolling upgrade) while the load runs.

    The same accounting as an experiment: every request and acknowledged
    write recorded, the service's convergence awaited after the action. The
    action's return value is passed back beside the result, with the wall
    clock when it began and the run (its records): (result, value, began, run).
    """
    settings = settings or Settings(warmup=3.0)
    chaos = Run(lab, name, settings, progress)
    chaos.require_calm()
    try:
        chaos.start_load(settings.warmup + 600)
        time.sleep(settings.warmup)
        began = time.time()
        chaos.event("inject", label or name, began)
        value = action()
        chaos.event("heal", f"{label or name}: done in {time.time() - began:.1f} s")
        chaos.plan = build_plan(lab.topology)
        chaos.converge()
        time.sleep(settings.after)
    finally:
        chaos.cleanup()
    return chaos.finish(), value, began, chaos
