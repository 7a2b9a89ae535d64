"""The load agent: an app server telling HAProxy how much it can take (`agent-check`).

With `[service] balance = "load"` every app server runs this program and each
load balancer connects to it every second (`agent-inter 1s`, on the address
it reaches the server at). It answers every connection with one line of
HAProxy's agent protocol and closes it:

- `down #why` when the server cannot serve whatever its load: the shared
  volume is not mounted, or the media folder on it is not there or not
  readable and writable by this user (the app's), or the database the app
  uses does not accept a connection;
- `drain #draining` while the drain file is there (/run/quiz/draining: a
  rolling restart's, or a scale-in's for a leaving server), and never with
  `ready`, so the agent cannot undo the drain an operator's tool set;
- `drain #why` when it is swamped: its own health page is not answered at
  all within HEALTH_TIMEOUT (the kernel still queues connections, nothing
  takes them);
- `up 1% #why` when it is overloaded but answering: its health page takes
  DRAIN_MS or more, or more requests wait for a worker than OVERLOAD times
  the workers' threads. Not a drain: under a load every server feels at
  once, every agent would drain its server and HAProxy would answer 503 to
  everyone, where requests that queue are merely slow; at 1 % the server
  gets new requests only when every other one is as busy;
- otherwise `up N%`: a weight from what a request meets here now — the time
  this server takes to answer its health page (so the CPU it may use, the
  queue before its workers and its database round trip all count) and the
  share of the CPU it may use at most (its cgroup's quota, if any).
  HAProxy's leastconn is weighted, so a server at 25 % gets a quarter of the
  requests in flight of a server at 100 %.

HAProxy keeps an agent's `drain` until the agent says `ready`; `ready` also
ends a drain an operator set (before removing a server), so the agent says it
only while it may have drained the server itself: for READY_FOR seconds after
its own last `drain`, and after it starts; and a tool that drains a server
puts the drain file there first, so within those seconds too the agent says
`drain`, not `ready`. The machine's load average is not
used: in a lab every host shares the machine's, and on a real host what it
means for a request is already in the health page's time.

The measuring runs in a thread every INTERVAL seconds; HAProxy gets the last
sample at once, and a sample older than STALE seconds (a stalled volume can
hold a `stat` for as long as the storage's timeout) counts as an overload.
`answer()` is pure and unit-tested; only the standard library is used, as the
host's own python3 runs it.

    python3 agent.py --listen ADDR:PORT --health URL --mount DIR --media DIR
                     --database HOST:PORT --app-port PORT --threads N [--drain-file PATH]
    python3 agent.py --ask ADDR:PORT       # print an agent's answer (exit 1: none)
"""

import argparse
import os
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request

INTERVAL = 0.5          # seconds between samples
SMOOTHING = 0.5         # weight of the newest health time in the moving average
FAST_MS = 25.0          # a health page this fast: the server has room (full weight)
DRAIN_MS = 1500.0       # a health page slower than this: overloaded (weight 1 %)
HEALTH_TIMEOUT = 2.0
DB_TIMEOUT = 0.5
OVERLOAD = 4            # requests waiting per worker thread that make an overload
MIN_WEIGHT = 1          # percent; 0 would be a drain in disguise
STALE = 5.0             # seconds without a fresh sample: the checks themselves hang
READY_FOR = 10.0        # seconds `ready` is said after a drain (every balancer hears it)
DRAIN_FILE = "/run/quiz/draining"   # the app's /healthz says "draining" while it exists too


def answer(sample, ready=False):
    """The agent's line for a sample: {"mount": problem or None, "database": bool,
    "health_ms": smoothed time of the health page or None (no answer),
    "refused": bool (nothing listens on the app port), "waiting": requests
    waiting for a worker, "threads": the workers' threads in all, "cpu_share":
    the fraction of the machine's CPUs it may use (1.0 without a quota),
    "draining": the drain file is there, "age": seconds since the sample}.
    `ready`: say `ready` too (see above)."""
    up = "up ready" if ready else "up"
    if sample is None or sample.get("age", 0) > STALE:
        # The measuring hangs (a stalled volume?): the server may still serve reads.
        return f"{up} {MIN_WEIGHT}% #no fresh measure\n"
    if sample.get("mount"):
        return f"down #{sample['mount']}\n"
    if not sample.get("database"):
        return "down #database not reachable\n"
    if sample.get("refused"):
        return "down #app not listening\n"
    if sample.get("draining"):
        return "drain #draining: the server is leaving or restarting\n"
    health = sample.get("health_ms")
    threads = max(1, sample.get("threads", 1))
    if health is None:
        return f"drain #swamped: no health page in {HEALTH_TIMEOUT:g} s\n"
    if health >= DRAIN_MS:
        return f"{up} {MIN_WEIGHT}% #overloaded: health page {health:.0f} ms\n"
    if sample.get("waiting", 0) >= OVERLOAD * threads:
        return f"{up} {MIN_WEIGHT}% #overloaded: {sample['waiting']} requests waiting\n"
    weight = min(1.0, FAST_MS / max(health, FAST_MS)) * min(1.0, sample.get("cpu_share", 1.0))
    percent = max(MIN_WEIGHT, min(100, round(100 * weight)))
    return f"{up} {percent}% #health {health:.0f} ms\n"


# -- measuring ---------------------------------------------------------------------------

def mount_problem(mount, media):
    """Why the app could not keep uploads here, or None."""
    if not os.path.ismount(mount):
        return f"{mount} not mounted"
    if not os.path.isdir(media):
        return f"no {media}"
    if not os.access(media, os.R_OK | os.W_OK | os.X_OK):
        return f"{media} not readable and writable"
    return None


def reachable(address, timeout=DB_TIMEOUT):
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except OSError:
        return False


def health_time(url, timeout=HEALTH_TIMEOUT):
    """(milliseconds to answer, refused): any HTTP answer counts (a 503 is timed too)."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError:
        pass
    except urllib.error.URLError as exc:
        return None, isinstance(exc.reason, ConnectionRefusedError)
    except OSError:
        return None, False
    return 1000 * (time.monotonic() - started), False


def parse_proc_net_tcp(text, port):
    """Requests waiting for a worker on `port`: connections not yet accepted
    (the listening socket's queue) and accepted ones with unread bytes."""
    waiting = 0
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5 or not fields[1].endswith(f":{port:04X}"):
            continue
        state = fields[3]
        rx_queue = int(fields[4].split(":")[1], 16)
        if state == "0A":       # LISTEN: rx_queue is the accept queue's length
            waiting += rx_queue
        elif state == "01" and rx_queue:    # ESTABLISHED, a request not read yet
            waiting += 1
    return waiting


def waiting_requests(port):
    try:
        with open("/proc/net/tcp") as f:
            return parse_proc_net_tcp(f.read(), port)
    except OSError:
        return 0


def cpu_share(cgroup_root="/sys/fs/cgroup", proc_cgroup="/proc/self/cgroup"):
    """The fraction of the machine's CPUs this server's processes may use: its
    cgroup's CPU quota (cgroup v1 cpu.cfs_quota_us, v2 cpu.max), 1.0 without one."""
    try:
        with open(proc_cgroup) as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f if line.count(":") >= 2]
    except OSError:
        return 1.0
    cpus = os.cpu_count() or 1
    share = 1.0
    for _, controllers, path in entries:
        if "cpu" in controllers.split(","):     # v1: the cpu controller's own hierarchy
            base = os.path.join(cgroup_root, controllers, path.lstrip("/"))
            allowed = _quota(os.path.join(base, "cpu.cfs_quota_us"),
                             os.path.join(base, "cpu.cfs_period_us"))
        elif not controllers:                   # v2: the unified hierarchy
            allowed = _quota(os.path.join(cgroup_root, path.lstrip("/"), "cpu.max"))
        else:
            continue
        if allowed is not None:
            share = min(share, allowed / cpus)
    return share


def _quota(quota_path, period_path=None):
    """CPUs one quota allows, or None (no such file, or no limit)."""
    try:
        with open(quota_path) as f:
            words = f.read().split()
        if period_path:
            with open(period_path) as f:
                words += f.read().split()
        quota, period = words[0], int(words[1])
    except (OSError, IndexError, ValueError):
        return None
    if quota in ("max", "-1") or period <= 0:
        return None
    return int(quota) / period


class Agent:
    def __init__(self, options):
        self.options = options
        self.sample = None
        self.taken = 0.0
        self.started = time.monotonic()
        self.drained = None         # when this agent last said drain
        self.lock = threading.Lock()

    def measure(self):
        o = self.options
        health, refused = health_time(o.health)
        previous = self.sample["health_ms"] if self.sample else None
        if health is not None and previous is not None:
            health = SMOOTHING * health + (1 - SMOOTHING) * previous
        return {
            "mount": mount_problem(o.mount, o.media),
            "database": reachable(o.database),
            "health_ms": health,
            "refused": refused,
            "waiting": waiting_requests(o.app_port),
            "threads": o.threads,
            "cpu_share": cpu_share(),
            "draining": os.path.exists(o.drain_file),
        }

    def loop(self):
        while True:
            started = time.monotonic()
            sample = self.measure()
            with self.lock:
                self.sample, self.taken = sample, time.monotonic()
            time.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))

    def line(self):
        now = time.monotonic()
        with self.lock:
            sample = dict(self.sample, age=now - self.taken) if self.sample else None
            ready = now - self.started < READY_FOR or (
                self.drained is not None and now - self.drained < READY_FOR)
            text = answer(sample, ready=ready)
            if text.startswith("drain"):
                self.drained = now
        return text


def serve(options):
    agent = Agent(options)
    threading.Thread(target=agent.loop, daemon=True).start()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.sendall(agent.line().encode())

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    host, _, port = options.listen.rpartition(":")
    with Server((host, int(port)), Handler) as server:
        server.serve_forever()


def ask(address, timeout=2.0):
    """An agent's line, as HAProxy reads it ("" when it does not answer)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while chunk := s.recv(1024):
                data += chunk
        return data.decode(errors="replace")
    except OSError:
        return ""


def main(argv):
    if argv[:1] == ["--ask"] and len(argv) == 2:
        line = ask(argv[1])
        print(line.rstrip("\n"))
        return 0 if line.strip() else 1
    parser = argparse.ArgumentParser(description="HAProxy's agent-check for a QUIZ app server")
    parser.add_argument("--listen", required=True, metavar="ADDR:PORT")
    parser.add_argument("--health", required=True, metavar="URL")
    parser.add_argument("--mount", required=True)
    parser.add_argument("--media", required=True)
    parser.add_argument("--database", required=True, metavar="HOST:PORT")
    parser.add_argument("--app-port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--drain-file", default=DRAIN_FILE, metavar="PATH")
    serve(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
