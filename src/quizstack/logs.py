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
