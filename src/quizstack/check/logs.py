"""The central logs, verified by following real traffic to the logs host.

A request from the first client, carrying a marker of its own in its query
string, must show on the logs host within WAIT seconds from the balancer
that took it and from the server that answered (its X-Server), both with the
request id the client got back in X-Request-ID. A connection attempt from
that client to the database's port must show as a firewall drop. And every
host on the management network must have sent something in the last minute
(each rsyslog marks itself alive every render_logs.MARK_INTERVAL seconds, so
a quiet host is not a silent one).

All waits poll the merged file on the logs host itself (probes/logs_query.py
--want), every 0.1 s, so a row takes about as long as the lines take to arrive.
"""

import json
import re
import secrets
import threading
import time

from quizstack.deploy import probes
from quizstack.deploy import render_logs as rl

WAIT = 5.0          # seconds a line may take to reach the logs host
RECENT = 60         # "has sent something in the last minute"

# Runs on the client: one GET through the firewall, the answer's headers as JSON.
_REQUEST = r"""
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        print(json.dumps({"status": r.status, "id": r.headers.get("X-Request-ID"),
                          "server": r.headers.get("X-Server")}))
except Exception as exc:
    print(json.dumps({"error": str(exc)}))
"""

# Runs on the client: SYNs to the database's port from chosen source ports, a tenth apart.
_PROBE = r"""
import socket, sys, time
target = (sys.argv[1], int(sys.argv[2]))
for port in map(int, sys.argv[3:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port))
    s.setblocking(False)
    s.connect_ex(target)
    time.sleep(0.1)
    s.close()
"""

# Runs on the logs host: which hosts have a line in the merged file since a time.
_RECENT_HOSTS = r"""
import os, sys
path, since = sys.argv[1], sys.argv[2]
seen = set()
try:
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 8 * 1024 * 1024))
        for raw in f:
            fields = raw.split(b" ", 2)
            if len(fields) > 2 and fields[0].decode(errors="replace") >= since:
                seen.add(fields[1].decode(errors="replace"))
except FileNotFoundError:
    pass
print(" ".join(sorted(seen)))
"""


def _wait_for(checker, wants, wait=WAIT):
    """{index: line} of the patterns found on the logs host within `wait` seconds."""
    m = checker.plan.management
    argv = ["python3", "-c", probes.source("logs_query"), "--wait", str(wait)]
    for want in wants:
        argv += ["--want", want]
    done = checker._run(m.logs, argv, timeout=wait + 30)
    found = {}
    for line in done.stdout.splitlines():
        index, _, text = line.partition(" ")
        if index.isdigit():
            found[int(index)] = text
    return found


def request_row(checker):
    plan = checker.plan
    client = plan.clients[0]
    marker = f"logcheck-{secrets.token_hex(6)}"
    url = f"{checker.base}/quizzes?check={marker}"
    name = (f"a request from {client} is on logs from the balancer and the server that "
            f"answered, with its X-Request-ID, within {WAIT:.0f} s")
    done = checker._run(client, ["python3", "-c", _REQUEST, url], timeout=20)
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = {"error": (done.stderr or done.stdout).strip()[-200:]}
    rid, server = answer.get("id"), answer.get("server")
    if answer.get("status") != 200 or not rid or not server:
        return checker.row("logs", name, False, f"the request itself: {answer}")
    sent = time.monotonic()
    balancers = "|".join(map(re.escape, plan.lb_hosts))
    found = _wait_for(checker, [
        rf"^\S+ ({balancers}) haproxy .*{marker}.* id={re.escape(rid)}$",
        rf"^\S+ {re.escape(server)} quiz .*\[{re.escape(rid)}\] GET /quizzes\?check={marker} 200 ",
    ])
    took = time.monotonic() - sent
    lb = found.get(0, "").split(" ", 2)[1] if 0 in found else None
    shown = (f"{rid} answered by {server}: " +
             ", ".join(f"{what} {'found' if i in found else 'missing'}"
                       for i, what in ((0, f"balancer line ({lb or 'none'})"), (1, "server line")))
             + f" after {took:.1f} s")
    return checker.row("logs", name, len(found) == 2, shown)


def drop_row(checker):
    plan = checker.plan
    client = plan.clients[0]
    client_address = plan.lab_addresses[client][0]
    database = str(plan.database_address)
    base = 41000 + secrets.randbelow(20000)
    ports = [str(base + i) for i in range(4)]
    name = (f"{client}'s probe of the database's port ({database}:{plan.database_port}) is "
            "on logs as a firewall drop")
    firewalls = "|".join(map(re.escape, plan.fw_hosts))
    want = (rf"^\S+ ({firewalls}) quizstack-nflog {re.escape(rl.DROP_PREFIX)}.*"
            rf"SRC={re.escape(str(client_address))} DST={re.escape(database)} .*"
            rf"SPT=({'|'.join(ports)}) DPT={plan.database_port}\b")
    prober = threading.Thread(target=checker._run, args=(
        client, ["python3", "-c", _PROBE, database, str(plan.database_port), *ports], 20))
    started = time.monotonic()
    prober.start()
    try:
        found = _wait_for(checker, [want])
    finally:
        prober.join()
    line = found.get(0, "")
    detail = (f"{line.split(' ', 2)[1]}: {line.split(rl.DROP_PREFIX, 1)[-1][:120]} "
              f"(after {time.monotonic() - started:.1f} s)" if line
              else f"no drop from {client}:{ports[0]}-{ports[-1]} within {WAIT:.0f} s")
    return checker.row("logs", name, bool(line), detail)


def recent_row(checker):
    m = checker.plan.management
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - RECENT))
    done = checker._run(m.logs, ["python3", "-c", _RECENT_HOSTS, rl.MERGED, since], timeout=30)
    seen = set(done.stdout.split()) & set(m.addresses)
    silent = [h for h in m.addresses if h not in seen]
    return checker.row(
        "logs", f"every host ({len(m.addresses)}) has sent something to logs in the last minute",
        done.returncode == 0 and not silent,
        f"silent: {', '.join(silent)}" if silent else f"all {len(seen)} heard since {since}Z")


def logs_checks(checker):
    m = checker.plan.management
    if m is None or not m.logs:
        return []
    return [request_row(checker), drop_row(checker), recent_row(checker)]
