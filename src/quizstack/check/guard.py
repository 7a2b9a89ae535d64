"""The back end as an app server taken over finds it: the guard's rows.

The app servers face the internet and share the back-end network with the
database, the consensus and the storage. Each row runs the attack for real
from the first app server (or, for the volume, from a back-end host that is
not an app server) and says what answered:

- an unauthenticated change to Patroni's configuration (PATCH /config) is
  refused by every database host, and the configuration is unchanged;
- etcd takes no write from there, through its v2 or its v3 API;
- a host that is not an app server cannot mount the volume;
- and the legitimate path still works: the app server's database router
  finds the primary (its GET /primary checks are not refused).

A write that got through is undone by the row itself (its key is a fresh
token, so nothing else is touched). `guard_checks(checker)` returns the rows.
"""

import json
import secrets

from quizstack.deploy.render import (
    DB_ROUTER_SOCKET, ETCD_CLIENT_PORT, PATRONI_API_PORT,
)
from quizstack.errors import CommandError

TIMEOUT = 3            # seconds an attempt may wait for an answer (the guard drops: no answer)
MOUNT_TIMEOUT = 5      # seconds a mount attempt may take (a dropped volfile server never answers; an admitted host mounts in under 1 s)

# Runs on the attacking host with Debian's python3: stages of HTTP calls, the
# calls of a stage side by side; each call's answer is [status, text], status
# 0 when nothing answered (timeout, refused, unreachable).
_CALLS = r"""
import json, sys, threading, urllib.error, urllib.request
ask = json.load(sys.stdin)
out = {}
def call(key, method, url, body, kind):
    data = body.encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", kind)
    try:
        with urllib.request.urlopen(request, timeout=ask["timeout"]) as answer:
            out[key] = [answer.status, answer.read(2000).decode(errors="replace")]
    except urllib.error.HTTPError as exc:
        out[key] = [exc.code, exc.read(300).decode(errors="replace")]
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        out[key] = [0, "%s: %s" % (type(reason).__name__, reason)]
for stage in ask["stages"]:
    threads = [threading.Thread(target=call, args=tuple(c)) for c in stage]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
print(json.dumps(out))
"""

# Runs on a host that is not an app server: mount the volume (bounded), write
# if it mounted, then leave nothing behind (unmount, and end the glusterfs
# client this attempt started, found by its unique mount point).
_MOUNT = r"""
import json, os, signal, subprocess, sys, tempfile, time
source, limit = sys.argv[1], float(sys.argv[2])
where = tempfile.mkdtemp(prefix="quizstack-guard-mount.")
found = {"mounted": False, "wrote": False}

def listed():
    # /proc/mounts, not a stat of the mount point: a FUSE mount whose client
    # never got its volume would hang a stat.
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == where for line in f if len(line.split()) > 1)

def end_clients():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%s/comm" % pid) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith("glusterfs") and where.encode() in argv:
            os.kill(int(pid), signal.SIGKILL)

started = time.monotonic()
code = None
if not any(os.path.exists(d + "/mount.glusterfs") for d in ("/sbin", "/usr/sbin")):
    # No client here (a full system without glusterfs-client): a refusal would
    # prove nothing, so glusterd itself is tried, which a guard leaves unanswered.
    import socket
    address = source.split(":")[0]
    try:
        socket.create_connection((address, 24007), timeout=3).close()
        found["said"] = "no glusterfs client here; glusterd at %s:24007 answers" % address
        found["reached"] = True
    except OSError as exc:
        found["said"] = "no glusterfs client here; glusterd at %s:24007: %s" % (
            address, type(exc).__name__)
    found["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(found))
    os.rmdir(where)
    sys.exit(0)
# Its output goes to a file, not a pipe: the glusterfs client it starts would
# hold a pipe open after the mount's end, and reading it would never finish.
with tempfile.TemporaryFile("w+") as said:
    mount = subprocess.Popen(["mount", "-t", "glusterfs", "-o", "log-file=/dev/null",
                              source, where],
                             stdin=subprocess.DEVNULL, stdout=said, stderr=said,
                             start_new_session=True)
    try:
        code = mount.wait(timeout=limit)
        said.seek(0)
        found["said"] = said.read().strip()[-200:] or "exit %d" % code
    except subprocess.TimeoutExpired:
        os.killpg(mount.pid, signal.SIGKILL)
        mount.wait()
        found["said"] = "no answer within %g s" % limit
found["seconds"] = round(time.monotonic() - started, 1)
if code == 0 and listed():
    found["mounted"] = True
    probe = os.path.join(where, ".quizstack-guard-probe")
    write = subprocess.run(["timeout", "5", "sh", "-c", 'echo probe > "$1" && rm -f "$1"',
                            "-", probe],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    found["wrote"] = write.returncode == 0
    found["write_error"] = write.stderr.strip()[-120:]
end_clients()
if listed():
    subprocess.run(["umount", "-l", where], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if not listed():
    os.rmdir(where)
print(json.dumps(found))
"""



def _calls(checker, host, stages, timeout=TIMEOUT):
    """Run stages of HTTP calls on `host`: {key: [status, text]} ({} if it did not answer)."""
    ask = json.dumps({"timeout": timeout, "stages": stages})
    try:
        done = checker.lab.run(host, ["python3", "-c", _CALLS], input=ask, check=False,
                               timeout=timeout * (len(stages) + 1) + 30)
        return json.loads(done.stdout)
    except (CommandError, ValueError):
        return {}


def _said(answer):
    status, text = answer if answer else (0, "no answer")
    return f"HTTP {status}" if status else (text.split(": ", 1)[-1][:60] or "no answer")


def patroni_row(checker, attacker):
    """From `attacker`, PATCH /config on every database host without a login."""
    plan = checker.plan
    token = "probe-" + secrets.token_hex(4)
    urls = {h: f"http://{a}:{PATRONI_API_PORT}/config"
            for h, a in zip(plan.database_hosts, plan.database_addresses)}
    body = json.dumps({"quizstack_guard_probe": token})
    found = _calls(checker, attacker, [
        [[f"patch {h}", "PATCH", url, body, "application/json"] for h, url in urls.items()],
        [[f"after {h}", "GET", url, None, ""] for h, url in urls.items()],
    ])
    changed = [h for h in urls if token in (found.get(f"after {h}") or [0, ""])[1]]
    accepted = [h for h in urls if (found.get(f"patch {h}") or [0])[0] == 200]
    if changed or accepted:
        # Undo it: null removes the key from Patroni's dynamic configuration.
        undo = json.dumps({"quizstack_guard_probe": None})
        _calls(checker, attacker, [[[f"undo {h}", "PATCH", urls[h], undo, "application/json"]
                                    for h in dict.fromkeys(changed + accepted)]])
    refused = all((found.get(f"patch {h}") or [0])[0] in (401, 403) for h in urls)
    readable = all((found.get(f"after {h}") or [0])[0] == 200 for h in urls)
    shown = "; ".join(f"{h}: PATCH {_said(found.get(f'patch {h}'))}, GET after "
                      f"{_said(found.get(f'after {h}'))}"
                      + (", configuration CHANGED" if h in changed else ", unchanged")
                      for h in urls)
    return checker.row("guard", f"from {attacker}, an unauthenticated change to Patroni's "
                       "configuration is refused", refused and readable and not changed, shown)


def etcd_row(checker, attacker):
    """From `attacker`, a write to every consensus member, v2 and v3."""
    import base64

    plan = checker.plan
    token = "probe-" + secrets.token_hex(4)
    key = f"/quizstack-guard-{token}"
    b64 = lambda text: base64.b64encode(text.encode()).decode()
    calls = []
    for name, address in plan.consensus_hosts:
        base = f"http://{address}:{ETCD_CLIENT_PORT}"
        calls.append([f"v2 {name}", "PUT", f"{base}/v2/keys{key}", f"value={token}",
                      "application/x-www-form-urlencoded"])
        calls.append([f"v3 {name}", "POST", f"{base}/v3/kv/put",
                      json.dumps({"key": b64(key), "value": b64(token)}), "application/json"])
    found = _calls(checker, attacker, [calls])
    taken = [k for k, answer in found.items() if answer and 200 <= answer[0] < 300]
    if taken:
        first = plan.consensus_hosts[0][1]
        base = f"http://{first}:{ETCD_CLIENT_PORT}"
        _calls(checker, attacker, [[
            ["undo v2", "DELETE", f"{base}/v2/keys{key}", None, ""],
            ["undo v3", "POST", f"{base}/v3/kv/deleterange", json.dumps({"key": b64(key)}),
             "application/json"]]])
    complete = len(found) == len(calls)
    shown = ", ".join(f"{k}: {_said(found.get(k))}" for k in (c[0] for c in calls))
    return checker.row("guard", f"from {attacker}, etcd takes no write (v2 or v3) on any member",
                       complete and not taken, shown)


def _not_an_app_server(plan):
    """A back-end host that is not an app server (nor a storage node): the witness
    first, else a database host."""
    storage = {name for name, _ in plan.storage_hosts}
    apps = set(plan.web_hosts)
    consensus = [n for n, _ in plan.consensus_hosts if n not in plan.database_hosts]
    for name in consensus + list(plan.database_hosts):
        if name not in storage and name not in apps:
            return name
    return None


def volume_row(checker):
    plan = checker.plan
    prober = _not_an_app_server(plan)
    if prober is None:
        return []
    source = f"{plan.storage_hosts[0][1]}:/{plan.volume}"
    name = f"{prober}, not an app server, cannot mount the volume {plan.volume}"
    try:
        done = checker.lab.run(prober, ["python3", "-c", _MOUNT, source, str(MOUNT_TIMEOUT)],
                               check=False, timeout=MOUNT_TIMEOUT + 30)
        found = json.loads(done.stdout)
    except (CommandError, ValueError) as exc:
        return [checker.row("guard", name, False, f"the attempt failed: {str(exc)[-120:]}")]
    if found["mounted"]:
        shown = "mounted, " + ("and WROTE a file" if found["wrote"] else
                               "but could not write: " + found.get("write_error", "?")[:80])
    elif found.get("reached"):
        shown = found.get("said", "?")
    else:
        shown = f"refused: {found.get('said', '?')}"
    return [checker.row("guard", name, not found["mounted"] and not found.get("reached"),
                        f"mount -t glusterfs {source} from {prober}: {shown} "
                        f"({found.get('seconds', '?')} s)")]


def router_row(checker, attacker):
    """The legitimate path: the app server's router sees one member UP, the leader."""
    from quizstack.check import parse_haproxy_stat
    from quizstack.stack import _HAPROXY_STAT, database_members

    plan = checker.plan
    try:
        done = checker.lab.run(attacker, ["python3", "-c", _HAPROXY_STAT, DB_ROUTER_SOCKET],
                               check=False, timeout=20)
        servers = parse_haproxy_stat(done.stdout, "postgres")
    except CommandError:
        servers = {}
    up = [s for s, state in servers.items() if state.startswith("UP")]
    members = database_members(checker.lab, plan)
    leader = next((m["name"] for m in members if m.get("role") == "leader"), None)
    shown = (", ".join(f"{s} {state}" for s, state in servers.items()) or "no answer") + \
        f"; Patroni's leader: {leader or 'none'}"
    return checker.row("guard", f"{attacker}'s database router still finds the primary "
                       "(its GET /primary checks pass the guard)",
                       len(up) == 1 and up[0] == leader, shown)


def guard_checks(checker):
    """Every row of this module that the scenario calls for."""
    plan = checker.plan
    attacker = plan.backends[0].name
    rows = []
    if plan.replicated:
        rows += [patroni_row(checker, attacker), etcd_row(checker, attacker)]
    if plan.storage_hosts:
        rows += volume_row(checker)
    if plan.replicated:
        rows.append(router_row(checker, attacker))
    return rows
