"""A no-change deployment of a lab, verified instead of run.

A full deployment of the complete lab asks every host about every file and
program it manages: some 500 commands, most of a minute's CPU on two cores,
to find that nothing changed. What it would do is a function of what it
deploys (quizstack's code, QUIZ's code, the scenario, the secrets and keys,
the Python environment) and of what the hosts hold. So a deployment that
succeeded records what it left (deploy.json in the lab's state):

- a fingerprint of everything it deployed from;
- which boot of each host it deployed (its init's PID and start time);
- every file it put in place, with the wanted content's SHA-1;
- the state of every program under each host's init (RUNNING, or EXITED
  for the one-shot ones).

The next `up` computes the fingerprint again; if it is the same and every
host is the boot that was deployed, one command per host (all hosts at
once) compares the files' SHA-1s and the programs' states. Only when all of
it holds is the deployment skipped; anything else (a changed scenario or
code, a host restarted or killed, a file edited, a program stopped) runs
the full deployment. What this does not see (an nftables ruleset flushed by
hand, a database dropped) the checks that end `up` verify from outside, and
`quizstack up --full` always deploys.
"""

import hashlib
import json
import os
import shlex
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from xml.parsers.expat import ExpatError

RECORD = "deploy.json"
CODE_SUFFIXES = (".py", ".toml", ".html", ".css", ".js", ".txt", ".json", ".svg", ".png")
# A program in one of these states is where a deployment leaves it.
SETTLED = ("RUNNING", "EXITED")
_ALL_PROGRAMS = xmlrpc.client.dumps((), "supervisor.getAllProcessInfo").replace("\n", "")
SEPARATOR = "--- quizstack programs ---"


def _code_dirs():
    import quiz
    import quizstack

    return [os.path.dirname(quizstack.__file__), os.path.dirname(quiz.__file__)]


def fingerprint(topology, secrets, keys, venv, code_dirs=None):
    """SHA-256 of everything a deployment deploys from."""
    digest = hashlib.sha256()
    digest.update(repr(topology).encode())
    digest.update(json.dumps(secrets, sort_keys=True).encode())
    if keys is not None:
        digest.update(keys.operator.public.encode() + keys.management.public.encode())
        for name in sorted(keys.hosts):
            digest.update(name.encode() + keys.hosts[name].public.encode())
    digest.update(str(venv).encode())
    for top in code_dirs if code_dirs is not None else _code_dirs():
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(CODE_SUFFIXES):
                    path = os.path.join(root, name)
                    digest.update(os.path.relpath(path, top).encode())
                    with open(path, "rb") as f:
                        digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def boots(lab):
    """Each running host's boot: its init's PID and start time (a PID alone may be reused)."""
    found = {}
    for host in lab.status()["hosts"]:
        if host["running"] and host.get("pid"):
            try:
                with open(f"/proc/{host['pid']}/stat") as f:
                    started = f.read().rsplit(")", 1)[1].split()[19]
            except (OSError, IndexError):
                continue
            found[host["name"]] = f"{host['pid']}@{started}"
    return found


def inspect_command(files):
    """One shell command: the SHA-1 of each file, then every program's state."""
    quoted = " ".join(shlex.quote(f) for f in sorted(files))
    sums = f"sha1sum -- {quoted} 2>/dev/null; " if files else ""
    return (f"{sums}echo '{SEPARATOR}'; curl -s --max-time 5 --unix-socket /run/supervisor.sock "
            f"-H 'Content-Type: text/xml' --data-binary {shlex.quote(_ALL_PROGRAMS)} "
            "http://localhost/RPC2")


def parse_inspection(output):
    """inspect_command's output -> ({path: sha1}, {program: state})."""
    sums_text, _, programs_text = output.partition(SEPARATOR)
    sums = {}
    for line in sums_text.splitlines():
        digest, _, path = line.partition("  ")
        if path:
            sums[path] = digest
    programs = {}
    try:
        (infos,), _ = xmlrpc.client.loads(programs_text.strip())
        programs = {i["name"]: i["statename"] for i in infos}
    except (xmlrpc.client.Fault, ExpatError, ValueError, KeyError, TypeError):
        pass
    return sums, programs


def inspect(lab, wanted_files):
    """{host: ({path: sha1}, {program: state})} for the hosts in `wanted_files`, all at once."""
    def one(host):
        done = lab.run(host, ["sh", "-c", inspect_command(wanted_files[host])], timeout=30,
                       check=False)
        return host, parse_inspection(done.stdout)

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(wanted_files)))) as pool:
        return dict(pool.map(one, wanted_files))


def differences(record, print_, found, current_boots, files=True):
    """What differs between the record and now; an empty list when nothing does.

    With `files=False` only the fingerprint and the boots are compared
    (nothing is asked of the hosts).
    """
    problems = []
    if record.get("fingerprint") != print_:
        return ["what is deployed from changed (code, scenario, secrets or keys)"]
    for host, boot in record.get("boots", {}).items():
        if current_boots.get(host) != boot:
            problems.append(f"{host} restarted since the last deployment")
    if not files:
        return problems
    for host, files in record.get("files", {}).items():
        sums, programs = found.get(host, ({}, {}))
        changed = sorted(p for p, digest in files.items() if sums.get(p) != digest)
        if changed:
            problems.append(f"{host}: {', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''} "
                            "changed")
        for program, state in record.get("programs", {}).get(host, {}).items():
            if programs.get(program) != state:
                problems.append(f"{host}: {program} is {programs.get(program) or 'gone'}, "
                                f"was {state}")
    return problems


def summary(record, seconds):
    files = sum(len(f) for f in record.get("files", {}).values())
    programs = sum(len(p) for p in record.get("programs", {}).values())
    hosts = len(record.get("files", {}))
    return (f"nothing changed since the last deployment: {files} files and {programs} programs "
            f"verified on {hosts} hosts ({seconds:.1f} s)")


def load(state_dir):
    try:
        with open(os.path.join(state_dir, RECORD)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def forget(state_dir):
    try:
        os.unlink(os.path.join(state_dir, RECORD))
    except FileNotFoundError:
        pass


def save(state_dir, print_, current_boots, files, programs):
    record = {"fingerprint": print_, "boots": current_boots, "files": files,
              "programs": {h: {p: s for p, s in found.items() if s in SETTLED}
                           for h, found in programs.items()}}
    path = os.path.join(state_dir, RECORD)
    with open(path + ".new", "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(path + ".new", path)
    return record
