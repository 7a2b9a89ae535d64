"""The whole service on a lab: the one flow `quizstack up` and `check` follow.

scenario → topology → lab (hosts exist) → deploy (services configured) →
check (verified). This module only chains the layers; each keeps its own job,
and the command line does the printing.
"""

import os
import sys
import time
from dataclasses import dataclass, field

from quizstack import check, deploy
from quizstack.deploy.plan import build_plan
from quizstack.deploy import sshkeys
from quizstack.deploy.secrets import load_or_create


@dataclass
class UpResult:
    url: str = ""
    nagios_url: str = ""         # Nagios's web interface, where the scenario has it
    deployed: deploy.DeployResult = None
    checks: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)


def secrets_of(lab):
    return load_or_create(lab.state_dir / "secrets")


def keys_of(topology, secrets_dir):
    """The deployment's SSH keys (sshkeys), when its scenario has a management network."""
    plan = build_plan(topology)
    if not plan.management:
        return None
    return sshkeys.load_or_create(secrets_dir, plan.management.addresses, label=topology.name)


def ssh_targets(topology, hosts, user="root", key=None, port=None, config=None,
                known_hosts=None):
    """Targets and pyinfra data for real hosts reached over SSH.

    `hosts` maps scenario hosts to addresses or names; a host left out is
    reached at its first address in the scenario.
    """
    targets, data = {}, {}
    for name, host in topology.hosts.items():
        targets[name] = hosts.get(name) or str(host.interfaces[0].address)
        entry = {"ssh_user": user}
        for key_name, value in (("ssh_key", key), ("ssh_port", port), ("ssh_config_file", config),
                                ("ssh_known_hosts_file", known_hosts)):
            if value:
                entry[key_name] = value
        # A host never seen before is trusted on first use, then pinned in known_hosts.
        entry["ssh_strict_host_key_checking"] = "accept-new"
        data[name] = entry
    return targets, data


def ges_targets(topology, secrets_dir, ges_address=None, config=None, user="root"):
    """Targets and pyinfra data that reach every host through ges (ProxyJump).

    Without `config`, the operators' ssh_config and known_hosts are written
    beside the secrets (ges at `ges_address`, else its scenario address),
    from the deployment's keys: the host keys are pinned from the start.
    Returns (targets, data, the ssh_config's path).
    """
    from quizstack.deploy import access

    plan = build_plan(topology)
    m = plan.management
    keys = keys_of(topology, secrets_dir)
    if config is None:
        config = sshkeys.ssh_config_path(secrets_dir)
        for path, text in ((keys.known_hosts, access.controller_known_hosts(plan, keys, ges_address)),
                           (config, access.controller_ssh_config(plan, keys, ges_address))):
            with open(path + ".new", "w") as f:
                f.write(text)
            os.replace(path + ".new", path)
    targets = {name: name for name in m.addresses}
    data = {name: {"ssh_user": user, "ssh_config_file": str(config),
                   "ssh_known_hosts_file": keys.known_hosts} for name in m.addresses}
    return targets, data, str(config)


def deploy_ssh(topology, secrets_dir, venv, targets, target_data, progress=None):
    """Deploy the service on real hosts over SSH (no lab, no forward, no checks)."""
    build_plan(topology)
    return deploy.deploy(topology, targets, load_or_create(secrets_dir), venv, progress,
                         target_data=target_data, keys=keys_of(topology, secrets_dir))


def is_deployed(lab):
    """Whether `up` has deployed the service on this lab (its secrets exist)."""
    return (lab.state_dir / "secrets" / "secrets.json").exists()


def deploy_lab(lab, progress=None, full=False, only=None, topology=None, release=None):
    """Configure every host of a running lab; returns what changed.

    When nothing it deploys from changed since the last deployment and the
    hosts still hold what it left, that is verified instead (deploy/verify.py);
    `full` always deploys. `only` limits the deployment to some hosts (a
    scale: the new servers and those that must know of them), `topology`
    deploys another version of the lab's scenario (servers about to leave);
    `release` another version of QUIZ for the servers that get one (ship.py).
    """
    from quizstack.deploy import ops, verify

    topology = topology or lab.topology
    targets, data = deploy.lab_targets(lab)
    secrets = secrets_of(lab)
    keys = keys_of(topology, lab.state_dir / "secrets")
    if keys:
        write_lab_ssh_config(lab, keys, topology)
    if only is not None:
        verify.forget(lab.state_dir)
        return deploy.deploy(topology, targets, secrets, sys.prefix, progress,
                             target_data=data, keys=keys, only=only)
    print_ = verify.fingerprint(topology, secrets, keys, sys.prefix)
    record = None if full or release is not None else verify.load(lab.state_dir)
    if record:
        started = time.monotonic()
        now = verify.boots(lab)
        problems = verify.differences(record, print_, None, now, files=False)
        if not problems and not lab.faults():
            found = verify.inspect(lab, record["files"])
            problems = verify.differences(record, print_, found, now)
            if not problems:
                result = deploy.DeployResult(verified=verify.summary(record, time.monotonic() - started))
                if progress:
                    progress(f"deploy: {result.verified}")
                return result
        if progress and problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            progress(f"deploy: {problems[0]}{more}: deploying")
    verify.forget(lab.state_dir)
    result = deploy.deploy(lab.topology, targets, secrets, sys.prefix, progress,
                           target_data=data, keys=keys, release=release)
    files = {h: dict(f) for h, f in ops.MANAGED.items()}
    if release is not None:
        return result     # not this checkout's: the next `up` must deploy again
    programs = {h: found[1] for h, found in verify.inspect(lab, {h: [] for h in files}).items()}
    verify.save(lab.state_dir, print_, verify.boots(lab), files, programs)
    return result


def lab_ssh_config(lab):
    """The operators' ssh_config of a lab: ges entered from the first client's side."""
    return sshkeys.ssh_config_path(lab.state_dir / "secrets")


def write_lab_ssh_config(lab, keys, topology=None):
    """Write the lab's ssh_config and known_hosts: `ssh -F <it> s1` works from the machine.

    The first hop starts in the first client's network namespace, so every
    connection enters through the firewall as an operator's would.
    """
    from quizstack.deploy import access
    from quizstack.lab import plan as lab_plan

    plan = build_plan(topology or lab.topology)
    client = plan.clients[0]
    netns = lab_plan.netns_path(lab_plan.host_netns(lab.name, client))
    config = access.controller_ssh_config(plan, keys, ges_proxy=f"nsenter --net={netns} nc %h %p")
    for path, text in ((keys.known_hosts, access.controller_known_hosts(plan, keys)),
                       (str(lab_ssh_config(lab)), config)):
        with open(path + ".new", "w") as f:
            f.write(text)
        os.replace(path + ".new", path)


def check_lab(lab, ports="1-65535", attacks=True):
    return check.run_checks(lab, build_plan(lab.topology), venv=sys.prefix, ports=ports,
                            attacks=attacks)


def up(lab, port=8080, progress=None, run_checks=True, ports=None, full=False):
    """Create or finish the lab, deploy the service, open the forward, check it.

    The checks scan a sample of common and service ports (`ports=None`);
    the scans of all 65,535 ports belong to `quizstack check`. The attacks on
    the service (docs/security.md) run when the deployment changed something;
    a no-change `up` leaves them to `quizstack check`.
    """
    result = UpResult()
    # Validate the whole plan before the first namespace exists.
    build_plan(lab.topology)
    started = time.monotonic()
    lab.up(progress=progress)
    result.seconds["lab"] = time.monotonic() - started

    started = time.monotonic()
    result.deployed = deploy_lab(lab, progress, full=full)
    result.seconds["deploy"] = time.monotonic() - started

    management = build_plan(lab.topology).management
    also = []
    if management and management.nagios:
        # Nagios's web interface on the next loopback port, through the firewall too.
        also.append((int(port) + 1, f"{management.nagios_address}:{management.nagios_port}"))
        result.nagios_url = f"http://127.0.0.1:{int(port) + 1}/nagios4/"
    result.url = lab.open_forward(port=port, also=also)
    if run_checks:
        started = time.monotonic()
        if progress:
            progress("check: verifying every requirement from the clients")
        result.checks = check_lab(lab, ports=ports, attacks=bool(result.deployed.changed))
        result.seconds["check"] = time.monotonic() - started
    return result


def service_status(lab):
    """What runs where, as the operator wants to see it: plain data for `status`.

    Read-only: programs under each running host's init, HAProxy's view of the
    backends, the volume's bricks, and whether the database answers.
    """
    from quizstack.check import parse_haproxy_stat

    plan = build_plan(lab.topology)
    hosts = lab.status()["hosts"]
    # A frozen host answers nothing: asking it would only wait for the timeout.
    frozen = {h["name"] for h in hosts if any(f["kind"] == "freeze" for f in h.get("faults", []))}
    running = {h["name"] for h in hosts if h["running"]} - frozen
    programs = {host: {"(frozen)": "FROZEN"} for host in frozen}
    for host in lab.topology.hosts:
        if host not in running:
            continue
        done = _ask(lab, host, ["supervisorctl", "status"], timeout=10)
        programs[host] = {line.split()[0]: line.split()[1]
                          for line in done.stdout.splitlines() if len(line.split()) > 1}
    backends = {}
    for lb in plan.lb_hosts:
        if lb in running:
            done = _ask(lab, lb, ["python3", "-c", _HAPROXY_STAT], timeout=10)
            backends[lb] = parse_haproxy_stat(done.stdout, "quiz_servers")
    pairs = {pair.name: pair_status(lab, pair, running) for pair in plan.pairs}
    volume = None
    first_nas = next((name for name, _ in plan.storage_hosts if name in running), None)
    if first_nas:
        done = _ask(lab, first_nas, ["gluster", "--mode=script", "volume", "status", plan.volume,
                                     "detail"], timeout=20)
        online = [line.split(":", 1)[1].strip() for line in done.stdout.splitlines()
                  if line.startswith("Online")]
        volume = {"name": plan.volume, "bricks": len(online),
                  "online": sum(state == "Y" for state in online)}
    database = None
    if plan.replicated:
        members = database_members(lab, plan, running)
        primary = next((m["name"] for m in members if m.get("role") == "leader"), None)
        database = {"address": ", ".join(f"{a}:{plan.database_port}" for a in plan.database_addresses),
                    "ready": primary is not None, "primary": primary, "members": members}
    elif plan.database_host in running:
        done = _ask(lab, plan.database_host, ["pg_isready", "-h", str(plan.database_address),
                                              "-p", str(plan.database_port)], timeout=10)
        database = {"address": f"{plan.database_address}:{plan.database_port}",
                    "ready": done.returncode == 0}
    return {"programs": programs, "backends": backends, "pairs": pairs, "volume": volume,
            "database": database}


_PATRONI_CLUSTER = (
    "import json, sys, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1], timeout=2) as r:\n"
    "    print(json.dumps(json.load(r).get('members', [])))\n"
)


def database_members(lab, plan, running=None):
    """Patroni's view of the replicated database: [{name, role, state, lag, ...}].

    Asked of the first database host that answers (any member knows the whole
    cluster); [] when none does.
    """
    import json

    from quizstack.deploy.render import PATRONI_API_PORT

    for name, address in zip(plan.database_hosts, plan.database_addresses):
        if running is not None and name not in running:
            continue
        done = _ask(lab, name, ["python3", "-c", _PATRONI_CLUSTER,
                                f"http://{address}:{PATRONI_API_PORT}/cluster"], timeout=10)
        try:
            return json.loads(done.stdout)
        except ValueError:
            continue
    return []


def _ask(lab, host, argv, timeout):
    """A read-only command on a host; a host that does not answer in time reads as nothing."""
    from subprocess import CompletedProcess

    from quizstack.errors import CommandError

    try:
        return lab.run(host, argv, check=False, timeout=timeout)
    except CommandError as exc:
        return CompletedProcess(argv, 1, "", str(exc))


def pair_status(lab, pair, running):
    """Which member holds a pair's floating addresses, and each one's VRRP state.

    Read on the members themselves: the addresses on their interfaces, and
    the state keepalived's notify script last recorded.
    """
    from quizstack.deploy.render import VRRP_STATE

    wanted = {cidr.split("/")[0] for _, cidr in pair.addresses}
    members = {}
    for host in pair.hosts:
        if host not in running:
            members[host] = {"state": "DOWN", "holds": []}
            continue
        done = _ask(lab, host, ["sh", "-c", f"cat {VRRP_STATE.format(name=pair.name)}; "
                                "ip -o -4 addr show"], timeout=10)
        lines = done.stdout.splitlines()
        state = lines[0].strip() if lines and not lines[0].startswith(("1:", "2:")) else "?"
        held = sorted(wanted & {line.split()[3].split("/")[0] for line in lines
                                if len(line.split()) > 3 and line.split()[2] == "inet"})
        members[host] = {"state": state, "holds": held}
    holders = [h for h, m in members.items() if m["holds"]]
    return {"addresses": sorted(wanted), "holder": holders[0] if len(holders) == 1 else None,
            "members": members}


# Reads HAProxy's stats socket on the load balancer (Debian's python3 only); another
# HAProxy's socket (an app server's database router) when named as the argument.
_HAPROXY_STAT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.settimeout(2)\n"
    "s.connect(sys.argv[1] if len(sys.argv) > 1 else '/run/haproxy/admin.sock')\n"
    "s.sendall(b'show stat\\n')\n"
    "data = b''\n"
    "while True:\n"
    "    chunk = s.recv(65536)\n"
    "    if not chunk: break\n"
    "    data += chunk\n"
    "print(data.decode())\n"
)


def db_switchover(lab, plan, candidate=None):
    """A planned switchover of the replicated database: Patroni moves the primary.

    Returns (old primary, new primary). Patroni waits for the candidate to
    have everything, stops writes on the old primary, promotes the candidate
    and turns the old one into its standby.
    """
    from quizstack.deploy.dbcluster import PATRONI_CONF
    from quizstack.errors import QuizstackError

    if not plan.replicated:
        raise QuizstackError(f"the database is a single server ({plan.database_host}): "
                             "there is nothing to switch over to")
    members = database_members(lab, plan)
    leader = next((m["name"] for m in members if m.get("role") == "leader"), None)
    standbys = [m["name"] for m in members if m.get("role") in ("sync_standby", "replica")
                and m.get("state") in ("running", "streaming")]
    if leader is None or not standbys:
        raise QuizstackError("the database has no running primary and standby to switch over")
    candidate = candidate or next((m["name"] for m in members if m.get("role") == "sync_standby"),
                                  standbys[0])
    if candidate not in standbys:
        raise QuizstackError(f"{candidate} is not a running standby (standbys: {', '.join(standbys)})")
    lab.run(leader, ["patronictl", "-c", PATRONI_CONF, "switchover", "--leader", leader,
                     "--candidate", candidate, "--force"], timeout=60)
    return leader, candidate
