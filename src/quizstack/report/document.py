"""The seed's deliverable as Markdown, from the scenario, the roles and the figures.

Every section is computed: the hosts and addresses from the topology, the
packages from deploy/packages.py per phase, the files, services and steps
from the roles run dry (trace.py), the checks from the plan as
quizstack.check verifies them, the costs of faults from the chaos results or
docs/reliability.md (figures.py). What is written here by hand is only what
exists nowhere else: the sentences that join them, and the remedies.
"""

from quizstack.check import open_addresses, protected_addresses
from quizstack.chaos import experiments
from quizstack.deploy import packages
from quizstack.deploy.roles import PROBE_DIR
from quizstack.report.trace import SECRET, VENV


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"
            for row in rows]
    return out + [""]


def _fence(text):
    return ["```", text.rstrip("\n").replace("```", "`` `"), "```", ""]


def _addresses(host):
    return ", ".join(f"{i.network} {i.address} ({i.name})" for i in host.interfaces)


def _floating(topology, host):
    group = topology.floating_of(host.name)
    if not group:
        return ""
    return ", ".join(f"{a.network} {a.address}" for a in group.addresses)


def _files_by_host(phases):
    """host -> [(phase key, FileWritten)], in deployment order."""
    found = {}
    for phase in phases:
        for host, work in phase.work.items():
            found.setdefault(host, []).extend((phase.key, f) for f in work.files)
    return found


def _services_by_host(phases):
    found = {}
    for phase in phases:
        for host, work in phase.work.items():
            for name, unit, _ in work.services:
                if unit not in found.setdefault(host, []):
                    found[host].append(unit)
    return found


def _is_program(path):
    return path.startswith(PROBE_DIR + "/")


def architecture(topology, plan, map_name):
    m = plan.management
    lines = ["## Architecture", "",
             f"![the topology of scenario {topology.name}]({map_name})", "",
             f"Scenario **{topology.name}**: {topology.description or ''}".rstrip(), ""]
    lines += [
        f"- Clients ({', '.join(plan.clients)}) reach the service at **{plan.lb_address}:{plan.port}** "
        f"through the firewall{'s' if len(plan.fw_hosts) > 1 else ''} ({', '.join(plan.fw_hosts)}); "
        "nothing else of the service is open to them.",
        f"- Load balancing: HAProxy on {', '.join(plan.lb_hosts)}, policy `{plan.balance}`, "
        f"over {len(plan.backends)} app servers ({', '.join(plan.web_hosts)}).",
        f"- App servers: gunicorn serving QUIZ (`quiz.wsgi:application`) on port {plan.app_port}, "
        f"{plan.workers} workers × {plan.threads} threads each; stateless.",
        f"- Uploads: GlusterFS volume `{plan.volume}`, replica {plan.replica} on "
        f"{', '.join(n for n, _ in plan.storage_hosts)}, mounted at `{plan.mount}` on every app server.",
    ]
    if plan.replicated:
        ttl, loop_wait, retry = plan.failover
        lines.append(
            f"- Database: PostgreSQL under Patroni on {', '.join(plan.database_hosts)} (a primary and a "
            f"synchronous standby, automatic failover; leader lease {ttl} s in etcd on "
            f"{', '.join(h for h, _ in plan.consensus_hosts)}); database `{plan.database_name}`, "
            f"role `{plan.database_user}`.")
    else:
        lines.append(f"- Database: PostgreSQL on {plan.database_host} ({plan.database_address}:"
                     f"{plan.database_port}), database `{plan.database_name}`, role "
                     f"`{plan.database_user}`; not replicated.")
    for pair in plan.pairs:
        lines.append(f"- Pair `{pair.name}` ({pair.role}): {', '.join(pair.hosts)} float "
                     f"{', '.join(a for _, a in pair.addresses)} with keepalived (VRRP)"
                     + (", sharing connections with conntrackd" if pair.role == "firewall" else "") + ".")
    if m:
        if m.ges:
            lines.append(f"- Management host {m.ges}: the operators' only way in (SSH with their RSA key "
                         f"at {m.ges_address}:22), and from it every host on {m.network} ({m.subnet}).")
        if m.nagios:
            lines.append(f"- Monitoring: Nagios on {m.nagios}, web interface at "
                         f"http://{m.nagios_address}:{m.nagios_port}/nagios4/ behind a login.")
        if m.logs:
            lines.append(f"- Central logs: every host's logs on {m.logs} over {m.network}.")
    lines.append("")
    lines += ["### Networks", ""]
    lines += _table(["network", "subnet", "what"],
                    [(n.name, n.subnet, n.description) for n in topology.networks.values()])
    if topology.floating:
        lines += ["### Floating addresses", ""]
        lines += _table(["group", "addresses", "held by one of"],
                        [(g.name, ", ".join(f"{a.network} {a.address}" for a in g.addresses),
                          ", ".join(g.hosts)) for g in topology.floating.values()])
    return lines


def hosts_section(topology, plan, phases):
    pkgs = packages.per_host(phases)
    files = _files_by_host(phases)
    services = _services_by_host(phases)
    lines = ["## Hosts", "",
             "Every host of the scenario with its addresses, the Debian packages the roles rely on "
             "(`quizstack deploy` installs them with apt first), "
             "the services they keep running and the files they write. Secrets are shown as "
             f"`{SECRET}` and keys as placeholders.", ""]
    for host in topology.hosts.values():
        lines += [f"### {host.name}", ""]
        lines.append(f"- roles: {', '.join(host.roles) or 'none'}"
                     + (f"; {host.description}" if getattr(host, "description", "") else ""))
        lines.append(f"- addresses: {_addresses(host)}")
        floating = _floating(topology, host)
        if floating:
            lines.append(f"- floating addresses it may hold: {floating}")
        if host.routes:
            lines.append("- routes: " + ", ".join(f"{r.destination} via {r.via}" for r in host.routes))
        if host.name not in pkgs:
            lines += ["- nothing deployed: " + ("a client, the outside" if "client" in host.roles
                                                 else "no phase runs here"), ""]
            continue
        lines.append(f"- packages: `apt-get install {' '.join(pkgs[host.name])}`")
        lines.append(f"- services (systemd units): {', '.join(services.get(host.name, [])) or 'none'}")
        lines.append("")
        rows = [(f"`{f.path}`", f.mode, f.owner, f"`{f.checked_by}`" if f.checked_by else "",
                 "program" if _is_program(f.path) else "configuration", phase)
                for phase, f in files.get(host.name, [])]
        if rows:
            lines += _table(["file", "mode", "owner", "checked by", "kind", "phase"], rows)
        else:
            lines += ["No file of its own: its phases work by commands (see the steps).", ""]
    return lines


def files_section(phases):
    """Each distinct configuration file once, with the hosts that get it."""
    seen = {}
    for phase in phases:
        for host, work in phase.work.items():
            for f in work.files:
                if _is_program(f.path):
                    continue
                entry = seen.setdefault((f.path, f.content), {"file": f, "hosts": [], "phase": phase.key})
                entry["hosts"].append(host)
    lines = ["## Configuration files", "",
             "The files the roles write, rendered from the scenario as a deployment would write them "
             "on hosts under systemd (in the lab the same programs run under supervisord instead of "
             "the systemd units). Hosts with the same content share one listing.", ""]
    for (path, content), entry in seen.items():
        f = entry["file"]
        lines += [f"### {path} — {', '.join(entry['hosts'])}", "",
                  f"{entry['phase']} · mode {f.mode} · {f.owner}"
                  + (f" · checked with `{f.checked_by}` before it goes live" if f.checked_by else ""), ""]
        lines += _fence(content)
    programs = sorted({(f.path, h) for p in phases for h, w in p.work.items() for f in w.files
                       if _is_program(f.path)})
    by_path = {}
    for path, host in programs:
        by_path.setdefault(path, []).append(host)
    lines += ["### Programs", "",
              "Our own probes, plugins and agents, copied as they are from "
              "`src/quizstack/deploy/probes/` (the Python standard library only):", ""]
    lines += _table(["program", "source", "hosts"],
                    [(f"`{p}`", f"`probes/{p.rsplit('/', 1)[1]}`", ", ".join(h)) for p, h in by_path.items()])
    return lines


def steps_section(topology, plan, phases):
    lines = ["## Installing: the steps in order", "",
             "1. On every host, Debian 12 (bookworm) or 13 (trixie), any mix, with the packages listed "
             "under Hosts (the roles read each host's versions); on the app servers, "
             f"quizstack's Python environment at `{VENV}` (`python3 -m venv` and "
             "`pip install` of this project; `quizstack deploy --venv` names another).",
             "2. From the operators' machine, the first time, straight to each host over its own SSH: "
             f"`quizstack deploy {topology.name} --direct --ssh-key KEY --host NAME=ADDRESS ...`.",
             "3. From then on (with a management host) through it: "
             f"`quizstack deploy {topology.name} --host ges=ADDRESS`." if plan.management and plan.management.ges
             else f"3. Again at any time: the same command changes only what differs.",
             "", "Secrets (the database passwords, Django's key, the Nagios login) and the SSH keys are "
             "generated on the first deployment and kept in a 0700 folder on the operators' machine "
             "(`--secrets`, files 0600); they reach only the hosts that use them.", "",
             "The deployment runs in stages; the phases of a stage run side by side, each on all its "
             "hosts in parallel, and a stage starts when everything it needs succeeded. Every phase "
             "waits for real readiness before the next one starts.", ""]
    stages = {}
    for phase in phases:
        stages.setdefault(phase.stage, []).append(phase)
    for stage, members in sorted(stages.items()):
        lines += [f"### Stage {stage + 1}", ""]
        for phase in members:
            needs = f" (after {', '.join(phase.needs)})" if phase.needs else ""
            lines.append(f"**{phase.key}** on {', '.join(phase.hosts)}{needs}:")
            lines.append("")
            first = phase.work[phase.hosts[0]]
            for step in first.steps:
                detail = f" — {step.detail}" if step.detail else ""
                lines.append(f"- {step.label}{detail}")
            written = [f.path for f in first.files]
            if written:
                lines.append("- writes " + ", ".join(f"`{p}`" for p in written))
            lines.append("")
    return lines


def verify_section(topology, plan):
    """The rows `quizstack check` verifies, described from the plan (check/ says how)."""
    m = plan.management
    opened = ", ".join(f"{a}:{p}" for a, p in open_addresses(plan).items())
    rows = []
    for client in plan.clients:
        rows.append(("firewall", f"{client}: a port scan of {len(protected_addresses(plan))} addresses "
                     f"behind the firewall answers only on {opened}"))
        rows.append(("firewall", f"{client}: ICMP echo answered only by the load balancer ({plan.lb_address})"))
    if plan.balance == "roundrobin":
        rows.append(("balancing", f"{10 * len(plan.backends)} requests from {plan.clients[0]} spread "
                     f"round-robin, 10 per server"))
    else:
        rows.append(("balancing", f"{10 * len(plan.backends)} requests reach every server "
                     f"(balance {plan.balance})"))
    rows += [("storage", "an image uploaded through the load balancer is served by every server"),
             ("storage", f"the image is on every brick of volume {plan.volume}"),
             ("database", f"the quiz created through the load balancer is in "
                          f"{' and '.join(plan.database_hosts)}'s database"),
             ("database", "no app server runs PostgreSQL"),
             ("database", f"the database port is closed to clients ({plan.clients[0]})")]
    for pair in plan.pairs:
        rows.append((pair.role, f"{pair.name}: one of {', '.join(pair.hosts)} holds its addresses, "
                     "the other stands by"))
        if pair.role == "loadbalancer":
            rows.append((pair.role, f"{pair.name}: HAProxy on {' and '.join(pair.hosts)} sees every server UP"))
        if pair.role == "firewall":
            rows.append((pair.role, f"{pair.name}: the same nftables ruleset is loaded on both"))
            rows.append((pair.role, f"{pair.name}: a client's connection through the active firewall "
                         "is known to the other (conntrackd)"))
    if plan.replicated:
        rows.append(("database", "one primary; the standby streams synchronously with nothing left to replay"))
        rows.append(("database", f"the consensus (etcd) answers on all {len(plan.consensus_hosts)} members"))
    if m and m.ges:
        rows += [("access", f"{plan.clients[0]} logs in to ges ({m.ges_address}:22) with the operators' RSA key"),
                 ("access", "ges refuses password and keyboard-interactive login"),
                 ("access", f"from ges, SSH by name to every host ({len(m.managed)})"),
                 ("access", f"{plan.clients[0]} reaches no sshd but ges's")]
    if m and m.nagios:
        rows += [("monitoring", "Nagios refuses a request without the login, answers with it"),
                 ("monitoring", "Nagios watches every host of the scenario and sees each UP"),
                 ("monitoring", "every service Nagios watches is OK")]
    rows += _attack_rows(plan)
    lines = ["## Operating and verifying", "",
             "`quizstack check` verifies every requirement from the clients' side (in a lab; each row "
             "says what it saw and how long it took). Its rows for this scenario:", ""]
    lines += _table(["group", "verified"], rows)
    lines += ["Day to day:", "",
              "- `quizstack status` — hosts, services, backends, pairs, volume, database;",
              "- `quizstack ssh [HOST]` — as an operator, through ges;" if m and m.ges else
              "- `quizstack exec HOST -- CMD` — a command on a host;",
              "- `quizstack scale web=N` — more or fewer app servers while serving;",
              "- `quizstack db switchover` — a planned move of the primary;" if plan.replicated else
              "- `quizstack chaos run web-kill` — a fault drill under load, measured;",
              "- `quizstack chaos run NAME` — the drills below, measured from the clients.", ""]
    if m and m.nagios:
        lines += [f"Nagios on {m.nagios} watches every host and service over {m.network}; "
                  f"its web interface is at http://{m.nagios_address}:{m.nagios_port}/nagios4/.", ""]
    return lines


# What each experiment's fault would need next: the remedy, written once, here.
REMEDIES = {
    "web-kill": "none needed for availability; capacity: more servers (`quizstack scale web=N`)",
    "web-stop": "none needed: the refused connection is retried on another server at once",
    "web-freeze": "large uploads cannot be replayed: object storage with direct uploads, or a "
                  "larger replay buffer",
    "storage-kill": "a shorter ping timeout trades stalls for false alarms; object storage "
                    "(S3-compatible) removes the mount from the request path",
    "lb-kill": "keep-alive connections are reset: clients resend; a managed or anycast load "
               "balancer, or connection sharing, would hide it",
    "fw-kill": "none measured: conntrackd keeps every connection",
    "db-kill": "about 8 s without writes: a shorter lease (bounded by Patroni's rule), or a "
               "queue that accepts writes while the primary moves",
    "db-cut": "as db-kill; the cut primary fences itself when its lease ends",
    "db-freeze": "a hung primary is found by timeouts only: watchdog-backed fencing (Patroni's "
                 "watchdog) would stop it sooner",
    "db-switchover": "planned: about 1.5 s without writes; switch over at a quiet time",
}


def _attack_rows(plan):
    """The check's attacks on the service (docs/security.md), as this scenario gets them."""
    rows = []
    if not plan.demo:
        rows.append(("security", "the seed's passwords (admin/1234, pepe/5678) are refused "
                                 "through the firewall"))
    rows += [("security", "a 100 MB upload is refused (413) within 1 s, before any server stores it"),
             ("security", f"40 wrong passwords from {plan.clients[-1]}: at most 15 checked, the rest "
                          "429; other clients unaffected")]
    if plan.replicated:
        rows += [("guard", f"from {plan.web_hosts[0]}, an unauthenticated change to Patroni's "
                           "configuration is refused"),
                 ("guard", f"from {plan.web_hosts[0]}, etcd takes no write on any member"),
                 ("guard", f"{plan.web_hosts[0]}'s database router still finds the primary")]
    rows.append(("guard", f"a host that is not an app server cannot mount the volume {plan.volume}"))
    for pair in plan.pairs:
        rows.append((pair.role, f"{pair.name}: forged VRRP adverts (priority 255) from another host "
                                "leave its addresses where they are"))
    return rows


def security_points(plan):
    """What this scenario still accepts from an attacker (docs/security.md has the whole model)."""
    lines = ["### Security: what is still accepted (docs/security.md)", ""]
    if plan.demo:
        lines.append("- **A teaching setup** (`[service] demo = true`): the seed's demo users "
                     "admin/1234 and pepe/5678 log in. Remedy: turn it off; the administrator's "
                     "password is then generated per deployment (`quizstack secrets`).")
    lines += [
        f"- **Plain HTTP on port {plan.port}**: passwords and session cookies cross the network in "
        "clear. Remedy: TLS at the balancer with HSTS and secure cookies.",
        "- **Accounts can be locked out on purpose**: QUIZ's per-account back-off (up to 300 s "
        "after repeated failures) also answers an attacker who fails an account's logins; "
        "the balancer's per-address limit only slows one address.",
    ]
    if plan.replicated:
        lines.append("- **etcd has no users**: only the database and consensus hosts reach it "
                     "(each host's guard ruleset), without a password. Remedy: etcd's own users "
                     "or client certificates.")
    if not plan.pairs:
        lines.append("- **No pairs, no private election**: a single firewall and balancer have no "
                     "VRRP to protect, but no standby either.")
    return lines + [""]


def weak_points_section(topology, plan, measured, source, quoted_weak):
    lines = ["## Weak points and remedies", ""]
    singles = []
    for role, hosts in (("firewall", plan.fw_hosts), ("load balancer", plan.lb_hosts)):
        if len(hosts) == 1:
            singles.append((role, hosts[0], "the service stops while it is down",
                            "a pair with floating addresses (keepalived), as in the complete scenario"))
    if not plan.replicated:
        singles.append(("database", plan.database_host, "every request that touches the database fails",
                        "a primary and a synchronous standby under Patroni with etcd on three hosts"))
    if singles:
        lines += ["### Single points of failure in this scenario", ""]
        lines += _table(["part", "host", "when it dies", "remedy"], singles)
    lines += ["### What each fault cost, measured", "", source, ""]
    rows = []
    columns = ["failed", "longest stall s", "without a saved write s", "detected s", "writes lost"]
    for name, experiment in experiments.EXPERIMENTS.items():
        figure = measured.get(name)
        cells = [figure.get(c, "–") for c in columns] if figure else ["not measured"] + ["–"] * (len(columns) - 1)
        rows.append([f"`{name}`", experiment.summary] + cells + [REMEDIES.get(name, "")])
    lines += _table(["experiment", "fault"] + columns + ["remedy"], rows)
    if quoted_weak:
        lines += ["### Weak points that remain (from docs/reliability.md)", ""]
        lines += [f"- {item}" for item in quoted_weak] + [""]
    lines += security_points(plan)
    lines += ["### Scalability", ""]
    lines += [
        f"- **Writes go to one primary** ({plan.database_host if not plan.replicated else 'the Patroni leader'}): "
        "the app servers scale out, the database's writes do not. Remedy: a larger primary first; "
        "reads already go to the standby only while there is no primary — routing all reads there "
        "would add read capacity.",
        f"- **One active load balancer** ({', '.join(plan.lb_hosts)}): a pair is for failover, not "
        "capacity. Remedy: several active balancers behind DNS or an anycast/managed front.",
        f"- **The shared volume** (replica {plan.replica}): every upload is written {plan.replica} times "
        "synchronously, and small-file metadata is slow on GlusterFS. Remedy: object storage for the "
        "images, served by a CDN.",
        f"- **App servers**: {len(plan.backends)} now; `quizstack scale web=N` adds or removes them "
        "while serving; each holds database connections, so a connection pooler (PgBouncer) comes "
        "before many more servers.",
        "",
    ]
    return lines


def document(topology, plan, phases, measured, source, quoted_weak, map_name="map.svg"):
    lines = [f"# QUIZ on scenario {topology.name}: architecture, installation, operation", "",
             "Generated by `quizstack report` from the scenario, the deployment's roles and the "
             "last measured figures; regenerate it rather than editing it.", ""]
    lines += architecture(topology, plan, map_name)
    lines += hosts_section(topology, plan, phases)
    lines += steps_section(topology, plan, phases)
    lines += verify_section(topology, plan)
    lines += weak_points_section(topology, plan, measured, source, quoted_weak)
    lines += files_section(phases)
    return "\n".join(lines).rstrip() + "\n"
