"""The monitoring, verified as an operator at a client sees it: through the firewall.

From the first client, Nagios's web interface must refuse a request without
the lab's login (401) and answer with it (200); then Nagios itself, read
from its statusjson.cgi with that login, must watch every host of the
scenario and report each one UP and every service OK. Right after a
deployment some checks have not run yet (PENDING) or ran before what they
watch was ready: those are scheduled again at once through Nagios's external
command file, and the rows wait for them a bounded time (WAIT seconds).
"""

import json
import time

from quizstack.deploy import render_monitoring as rm

WAIT = 40.0              # seconds the rows wait for pending or failing checks to turn OK
HOST_STATES = {1: "PENDING", 2: "UP", 4: "DOWN", 8: "UNREACHABLE"}
SERVICE_STATES = {1: "PENDING", 2: "OK", 4: "WARNING", 8: "UNKNOWN", 16: "CRITICAL"}

# Runs on the client with Debian's python3: the login comes on stdin, never in argv.
_FETCH = r"""
import base64, json, sys, urllib.error, urllib.request
ask = json.load(sys.stdin)
login = "Basic " + base64.b64encode((ask["user"] + ":" + ask["password"]).encode()).decode()
def get(path, auth):
    request = urllib.request.Request(ask["base"] + path)
    if auth:
        request.add_header("Authorization", login)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError as exc:
        return 0, str(exc)
out = {}
if ask.get("front"):
    out["anonymous"] = get("/nagios4/", False)[0]
    out["logged_in"] = get("/nagios4/", True)[0]
for query in ("hostlist", "servicelist"):
    code, body = get("/nagios4/cgi-bin/statusjson.cgi?query=%s&details=true" % query, True)
    try:
        out[query] = json.loads(body)["data"][query]
    except (ValueError, KeyError, TypeError):
        out[query] = None
        out[query + "_error"] = "HTTP %s %s" % (code, body[:200])
print(json.dumps(out))
"""


def _credentials(checker):
    from quizstack.stack import secrets_of

    return rm.NAGIOS_USER, secrets_of(checker.lab)["nagios_password"]


def fetch(checker, front=False):
    """What Nagios reports, read from a client through the firewall:
    {"hostlist": {host: {...}}, "servicelist": {host: {description: {...}}}, ...}."""
    m = checker.plan.management
    user, password = _credentials(checker)
    ask = {"base": f"http://{m.nagios_address}:{m.nagios_port}", "user": user,
           "password": password, "front": front}
    done = checker.lab.run(checker.plan.clients[0], ["python3", "-c", _FETCH],
                           input=json.dumps(ask), timeout=40, check=False)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"error": (done.stderr or done.stdout).strip()[-200:]}


def states(seen):
    """({host: state}, {(host, service): (state, plugin output)}) from a fetch."""
    hosts = {name: HOST_STATES.get(h.get("status"), str(h.get("status")))
             for name, h in (seen.get("hostlist") or {}).items()}
    services = {(host, name): (SERVICE_STATES.get(s.get("status"), str(s.get("status"))),
                               s.get("plugin_output", ""))
                for host, found in (seen.get("servicelist") or {}).items()
                for name, s in found.items()}
    return hosts, services


def force_checks(checker, hosts):
    """Ask Nagios to check these hosts and all their services now (external commands)."""
    text = rm.external_commands(sorted(hosts), int(time.time()))
    checker.lab.run(checker.plan.management.nagios, ["tee", rm.COMMAND_FILE], input=text,
                    timeout=10, check=False)


def wait_all_ok(checker, wait=WAIT):
    """Fetch until every host is UP and every service OK, forcing checks of the others.

    Returns the last fetch and the seconds waited after the first one (0 when
    everything was OK at once).
    """
    seen = fetch(checker, front=True)
    started = time.monotonic()
    forced = 0.0
    while True:
        hosts, services = states(seen)
        bad = {h for h, s in hosts.items() if s != "UP"} | \
              {h for (h, _), (s, _) in services.items() if s != "OK"}
        if (hosts and services and not bad) or time.monotonic() - started >= wait:
            return seen, time.monotonic() - started
        if bad and time.monotonic() - forced >= 5:
            force_checks(checker, bad)
            forced = time.monotonic()
        time.sleep(1)
        seen = dict(fetch(checker), anonymous=seen.get("anonymous"),
                    logged_in=seen.get("logged_in"))


def monitoring_checks(checker):
    plan = checker.plan
    m = plan.management
    if m is None or not m.nagios:
        return []
    Row = getattr(checker, "row", None) or _row_type()
    client = plan.clients[0]
    where = f"http://{m.nagios_address}:{m.nagios_port}/nagios4/"
    seen, waited = wait_all_ok(checker)
    rows = [
        Row("monitoring", f"{client}: Nagios at {where} refuses a request without the login",
            seen.get("anonymous") == 401, f"HTTP {seen.get('anonymous')} without credentials"),
        Row("monitoring", f"{client}: Nagios answers with the lab's login ({rm.NAGIOS_USER})",
            seen.get("logged_in") == 200, f"HTTP {seen.get('logged_in')} with credentials"),
    ]
    hosts, services = states(seen)
    wanted = set(m.addresses) | {rm.SERVICE_HOST}
    missing = sorted(wanted - set(hosts))
    down = sorted(f"{h} {s}" for h, s in hosts.items() if s != "UP")
    error = seen.get("hostlist_error") or seen.get("error") or ""
    rows.append(Row(
        "monitoring", "Nagios watches every host of the scenario and sees each UP",
        bool(hosts) and not missing and not down,
        f"{len(hosts)} hosts" + (f"; not watched: {', '.join(missing)}" if missing else "")
        + (f"; {', '.join(down)}" if down else ", all UP") + (f"; {error}" if error else "")))
    failing = sorted(f"{h}/{d} {s}: {out[:80]}" for (h, d), (s, out) in services.items() if s != "OK")
    watched = {h for h, _ in services}
    without = sorted(wanted - watched)
    rows.append(Row(
        "monitoring", "every service Nagios watches is OK",
        bool(services) and not failing and not without,
        f"{len(services)} services on {len(watched)} hosts"
        + (f"; {'; '.join(failing)}" if failing else ", all OK")
        + (f"; no service on {', '.join(without)}" if without else "")
        + (f" (after waiting {waited:.0f} s for checks forced now)" if waited >= 1 else "")
        + (f"; {seen.get('servicelist_error')}" if seen.get("servicelist_error") else "")))
    return rows


def _row_type():
    # Imported here: quizstack.check imports this module for Checker.service.
    from quizstack.check import CheckResult

    return CheckResult
