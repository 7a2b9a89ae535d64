"""`quizstack logs`: the lines of the central logs, asked of the logs host.

The arguments are checked here, before anything runs, so a bad one is one
clear line (an unknown host, a bad regular expression, a --since that is
neither a duration nor a time); the search itself runs on the logs host
(probes/logs_query.py, given as `python3 -c`, so nothing needs installing),
which reads its merged file and prints the lines in time order.
"""

import re
import subprocess
from datetime import datetime, timedelta, timezone

from quizstack.deploy import probes
from quizstack.errors import QuizstackError

DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def since_stamp(text, now=None):
    """--since as the merged file's time format: a duration back from now (10m,
    90s, 2h, 1d) or a time (2026-11-27T12:00[:00], taken as UTC)."""
    now = now or datetime.now(timezone.utc)
    text = (text or "").strip()
    found = DURATION.match(text)
    if found:
        moment = now - timedelta(**{UNITS[found.group(2)]: float(found.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise QuizstackError(f"logs: --since {text!r} is neither a duration (10m, 90s, 2h, 1d) "
                                 "nor a time (2026-11-27T12:00, UTC)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def query_argv(plan, hosts=(), since=None, grep=None, request=None, follow=False, now=None):
    """The logs host's command for these arguments; QuizstackError for a bad one."""
    m = plan.management
    if not m or not m.logs:
        raise QuizstackError("logs: the scenario has no logs host (the complete scenario has one)")
    known = list(m.addresses)
    for name in hosts:
        if name not in known:
            raise QuizstackError(f"logs: unknown host {name!r}: the hosts with logs are "
                                 f"{', '.join(known)}")
    if grep:
        try:
            re.compile(grep)
        except re.error as exc:
            raise QuizstackError(f"logs: --grep {grep!r} is not a regular expression: {exc}") from None
    if request is not None and not REQUEST_ID.match(request):
        raise QuizstackError(f"logs: --request {request!r} is not a request id "
                             "(letters, digits, . _ : - ; as in the X-Request-ID header)")
    argv = ["python3", "-c", probes.source("logs_query")]
    if hosts:
        argv += ["--hosts", ",".join(hosts)]
    if since:
        argv += ["--since", since_stamp(since, now)]
    if grep:
        argv += ["--grep", grep]
    if request:
        argv += ["--request", request]
    if follow:
        argv.append("--follow")
    return argv


def read(lab, plan, **kwargs):
    """The matching lines, in time order."""
    argv = query_argv(plan, **kwargs)
    done = lab.run(plan.management.logs, argv, timeout=120, check=False)
    if done.returncode != 0:
        raise QuizstackError(f"logs: the search on {plan.management.logs} failed: "
                             f"{(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout.splitlines()


def follow(lab, plan, **kwargs):
    """Print the matching lines, then new ones as they arrive, until interrupted; the exit code."""
    argv = lab.enter_argv(plan.management.logs) + query_argv(plan, follow=True, **kwargs)
    return subprocess.run(argv, env=lab.host_env({})).returncode


# -- measuring the logs (bench/logs, tests/lab/test_logs.py) ---------------------------

# Runs on the logs host: which of the ids on stdin have a balancer line (id=ID)
# and which a server line ([ID]) in the merged file and its rotated copies.
_FIND_IDS = r"""
import glob, json, re, sys
ids = set(json.load(sys.stdin))
balancer, server = set(), set()
mark = re.compile(r"id=([A-Za-z0-9._:-]+)$|\[([A-Za-z0-9._:-]+)\]")
for path in glob.glob(sys.argv[1] + "*"):
    with open(path, errors="replace") as f:
        for line in f:
            for a, b in mark.findall(line.rstrip("\n")):
                if a in ids:
                    balancer.add(a)
                if b in ids:
                    server.add(b)
print(json.dumps({"balancer": sorted(balancer), "server": sorted(server)}))
"""


def find_ids(lab, plan, ids):
    """({ids with a balancer line}, {ids with a server line}) on the logs host."""
    import json

    from quizstack.deploy.render_logs import MERGED

    done = lab.run(plan.management.logs, ["python3", "-c", _FIND_IDS, MERGED],
                   input=json.dumps(sorted(ids)), timeout=300, check=False)
    if done.returncode != 0:
        raise QuizstackError(f"logs: looking for request ids on {plan.management.logs} failed: "
                             f"{done.stderr.strip()[-300:]}")
    found = json.loads(done.stdout)
    return set(found["balancer"]), set(found["server"])


def missing_lines(lab, plan, requests, wait=120.0, progress=None):
    """The requests (chaos load records) whose lines are not on the logs host,
    after waiting at most `wait` s for the backlog: {"balancer": [...], "server": [...]}.

    Every request that got an answer with an id must have its balancer line;
    every one a server answered (X-Server) its server line too.
    """
    import time

    want_balancer = {r["id"] for r in requests if r.get("id")}
    want_server = {r["id"] for r in requests if r.get("id") and r.get("server")}
    deadline = time.monotonic() + wait
    while True:
        balancer, server = find_ids(lab, plan, want_balancer)
        lost = {"balancer": sorted(want_balancer - balancer), "server": sorted(want_server - server)}
        if not lost["balancer"] and not lost["server"] or time.monotonic() > deadline:
            return lost
        if progress:
            progress(f"waiting for the backlog: {len(lost['balancer'])} balancer and "
                     f"{len(lost['server'])} server lines not yet on {plan.management.logs}")
        time.sleep(5)


def kill_drill(lab, hold=60.0, warmup=5.0, after=10.0, rate=20.0, wait=120.0, progress=None):
    """The logs host killed for `hold` s under the chaos load, then healed: the
    lines the load's requests should have left, missing once the backlog is in."""
    import time

    from quizstack.chaos import runner
    from quizstack.deploy.plan import build_plan

    plan = build_plan(lab.topology)
    if not plan.management or not plan.management.logs:
        raise QuizstackError("logs: the scenario has no logs host")
    settings = runner.Settings(warmup=warmup, after=after, rate=rate)
    chaos = runner.Run(lab, "logs-kill", settings, progress)
    chaos.require_calm()
    try:
        chaos.start_load(warmup + hold + after + 60)
        time.sleep(warmup)
        chaos.inject("kill", plan.management.logs)
        time.sleep(hold)
        chaos.heal(plan.management.logs)
        healed = time.monotonic()
        time.sleep(after)
    finally:
        chaos.cleanup()
    requests, _ = chaos.records()
    lost = missing_lines(lab, plan, requests, wait=wait, progress=progress)
    return {"requests": len(requests), "with_id": sum(1 for r in requests if r.get("id")),
            "answered_by_server": sum(1 for r in requests if r.get("id") and r.get("server")),
            "lost_balancer": len(lost["balancer"]), "lost_server": len(lost["server"]),
            "lost_examples": (lost["balancer"] + lost["server"])[:5],
            # from the heal until every line was found (the `after` load included)
            "all_in_after": round(time.monotonic() - healed, 1), "run": chaos.id}
