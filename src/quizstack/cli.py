"""The quizstack command line: parses arguments, calls the layers, prints.

This is the one place that prints and the one place that exits. Every layer
below raises QuizstackError; here it becomes one line on stderr and exit 1.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from quizstack.errors import CommandError, QuizstackError

# The complete scenario: every part of the seed, no single point of failure in
# front of the servers (pfinal stays the seed's base figure: `up pfinal`).
DEFAULT_SCENARIO = "complete"


def _django(argv):
    """Run a Django management command of the QUIZ app in this process."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quiz.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["quizstack app"] + argv)
    return 0


def cmd_app(args):
    if args.app_command == "serve":
        argv = [
            "gunicorn", "quiz.wsgi:application",
            "--bind", args.bind,
            "--workers", str(args.workers),
            "--access-logfile", "-",
            # The path without its query: an API token (?token=) never reaches the log.
            "--access-logformat", '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s',
        ]
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quiz.settings")
        os.execvp(sys.executable, [sys.executable, "-m"] + argv)
    if args.app_command == "migrate":
        return _django(["migrate", "--noinput"])
    if args.app_command == "seed":
        return _django(["seed", "--check"] if args.check else ["seed"])
    return _django(["help"])


# -- the lab -------------------------------------------------------------------


def _progress(message):
    print(f"  {message}", flush=True)


def _named_lab(args):
    return getattr(args, "lab", None) or os.environ.get("QUIZSTACK_LAB")


def _lab_name(args, default=None):
    """--lab, $QUIZSTACK_LAB, the given default, the only lab there is, else the default scenario's."""
    named = _named_lab(args) or default
    if named:
        return named
    from quizstack.lab import existing_labs

    labs = existing_labs()
    return labs[0] if len(labs) == 1 else DEFAULT_SCENARIO


def _lab(args):
    from quizstack.lab import Lab

    return Lab(_lab_name(args))


def _print_checks(results, as_json=False):
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return
    width = max(len(f"{r.group}: {r.name}") for r in results)
    for r in results:
        label = f"{r.group}: {r.name}"
        print(f"  {'PASS' if r.ok else 'FAIL'}  {r.seconds:5.1f} s  {label.ljust(width)}  {r.detail}")
    passed = sum(r.ok for r in results)
    print(f"check: {passed} passed, {len(results) - passed} failed")


def _print_doctor(results, as_json=False):
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return
    width = max(len(r.name) for r in results)
    marks = {"ok": "ok", "warn": "warn", "missing": "MISSING"}
    for r in results:
        fix = f"; fix: {r.fix}" if r.fix and not r.ok else ""
        print(f"  {marks[r.status]:<7}  {r.name.ljust(width)}  {r.detail}{fix}")
    counts = {status: sum(r.status == status for r in results) for status in marks}
    print(f"doctor: {counts['ok']} ok, {counts['warn']} warning(s), {counts['missing']} missing")


def cmd_doctor(args):
    from quizstack import doctor

    results = doctor.run()
    _print_doctor(results, as_json=args.json)
    return 1 if any(r.missing for r in results) else 0


def cmd_up(args):
    from quizstack import doctor, stack
    from quizstack.lab import Lab
    from quizstack.topology import load_scenario

    if args.scenario is None:
        # No scenario named: an existing lab goes on with its own.
        lab = Lab(_lab_name(args))
        if lab.exists:
            topo = lab.topology
        else:
            topo = load_scenario(DEFAULT_SCENARIO)
            lab = Lab(_named_lab(args) or topo.name, topology=topo)
    else:
        topo = load_scenario(args.scenario)
        lab = Lab(_lab_name(args, topo.name), topology=topo)
    # Before anything starts: what this machine lacks, every missing piece at once.
    doctor.require(topo)
    if args.scenario is not None and lab.exists:
        # A running lab takes a new version of its scenario that only adds
        # or removes app servers (the seed's s4), scaled while serving.
        own = Lab(lab.name)
        text = Path(topo.source).read_text()
        if text != own.scenario_text:
            from quizstack import scale

            if not scale.converge(own, text, _progress):
                raise QuizstackError(
                    f"lab {lab.name} runs another version of scenario {topo.name}: on a "
                    "running lab only app servers can be added or removed; run `quizstack "
                    "destroy` first for anything else")
        lab = own
    print(f"lab {lab.name}: up (scenario {topo.name})", flush=True)
    result = stack.up(lab, port=args.port, progress=_progress, run_checks=not args.no_check,
                      full=args.full)
    changed = result.deployed.changed
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"deploy: {len(changed)} change(s)" if changed else "deploy: no change", f"({seconds})")
    if result.checks:
        _print_checks(result.checks)
        print("  (the scans covered common and service ports; `quizstack check` scans all 65,535"
              + (")" if changed else "; with nothing changed, the attacks are left to it)"))
    from quizstack.deploy.plan import build_plan

    print(_admin_line(build_plan(lab.topology), lab.state_dir / "secrets" / "secrets.json"))
    print(f"QUIZ is served at {result.url} (through the firewall, as a client on LAN1)")
    if result.nagios_url:
        secrets = lab.state_dir / "secrets" / "secrets.json"
        from quizstack.deploy.render_monitoring import NAGIOS_USER

        print(f"Nagios is at {result.nagios_url} (user {NAGIOS_USER}; the password is "
              f"nagios_password in {secrets}); operators: quizstack ssh [HOST]")
    return 0 if all(r.ok for r in result.checks) else 1


def _admin_line(plan, secrets):
    """Who administers QUIZ, and where the password is (never the password itself)."""
    if plan.demo:
        return ("TEACHING SETUP: the seed's demo users admin/1234 and pepe/5678 log in "
                "([service] demo = true); never let real clients reach it")
    return (f"QUIZ's administrator is admin; the password was generated for this lab "
            f"(admin_password in {secrets}, or `quizstack secrets`)")


def cmd_secrets(args):
    """The lab's logins for people: QUIZ's administrator and Nagios (read from the 0600 file)."""
    from quizstack.check import admin_login
    from quizstack.deploy.render_monitoring import NAGIOS_USER
    from quizstack.deploy.plan import build_plan
    from quizstack.deploy.secrets import load_or_create

    lab = _lab(args)
    if not lab.exists:
        raise QuizstackError(f"lab {lab.name} does not exist (quizstack up first)")
    plan = build_plan(lab.topology)
    folder = lab.state_dir / "secrets"
    found = load_or_create(folder)
    user, password = admin_login(folder, plan)
    print(f"# lab {lab.name}: {folder / 'secrets.json'} (mode 0600)")
    print(f"QUIZ administrator: {user} {password}" + ("   (teaching setup: the seed's)" if plan.demo else ""))
    if plan.management and plan.management.nagios:
        print(f"Nagios: {NAGIOS_USER} {found['nagios_password']}")
    return 0


def cmd_deploy(args):
    """Real hosts over SSH: the same roles, through pyinfra's SSH connector."""
    from quizstack import stack
    from quizstack.deploy.plan import build_plan
    from quizstack.topology import load_scenario

    topo = load_scenario(args.scenario)
    hosts = {}
    for item in args.host:
        name, sep, address = item.partition("=")
        if not sep or not address:
            raise QuizstackError(f"--host wants NAME=ADDRESS, not {item!r}")
        topo.host(name)   # a clear error for an unknown host
        hosts[name] = address
    secrets = args.secrets or os.path.join(os.path.expanduser("~"), ".quizstack", topo.name)
    management = build_plan(topo).management
    if management and management.ges and not args.direct:
        # Every host through ges: its management address, ges's key, pinned host keys.
        targets, data, config = stack.ges_targets(topo, secrets, hosts.get(management.ges),
                                                  config=args.ssh_config, user=args.ssh_user)
        print(f"deploy {topo.name} over SSH through {management.ges} ({config})", flush=True)
    else:
        targets, data = stack.ssh_targets(topo, hosts, user=args.ssh_user, key=args.ssh_key,
                                          port=args.ssh_port, config=args.ssh_config,
                                          known_hosts=args.known_hosts)
        print(f"deploy {topo.name} over SSH", flush=True)
    result = stack.deploy_ssh(topo, secrets, args.venv or sys.prefix, targets, data,
                              progress=_progress)
    changed = result.changed
    print(f"deploy: {len(changed)} change(s)" if changed else "deploy: no change",
          f"({result.seconds:.1f} s)")
    return 0


def cmd_check(args):
    from quizstack import stack

    lab = _lab(args)
    results = stack.check_lab(lab, ports=args.ports)
    _print_checks(results, as_json=args.json)
    return 0 if all(r.ok for r in results) else 1


def cmd_stop(args):
    lab = _lab(args)
    print(f"lab {lab.name}: stop", flush=True)
    lab.stop(progress=_progress)
    return 0


def cmd_start(args):
    lab = _lab(args)
    print(f"lab {lab.name}: start", flush=True)
    lab.start(progress=_progress)
    from quizstack import stack

    if stack.is_deployed(lab):
        # The hosts' inits bring the services back by themselves; a deployment
        # run waits until they are all ready (and finds nothing to change).
        result = stack.deploy_lab(lab, progress=_progress)
        changed = result.changed
        print(f"services ready ({len(changed)} change(s))" if changed else "services ready")
    return 0


def cmd_destroy(args):
    lab = _lab(args)
    print(f"lab {lab.name}: destroy", flush=True)
    lab.destroy(progress=_progress)
    return 0


def cmd_status(args):
    lab = _lab(args)
    status = lab.status()
    if args.json:
        if any(h["running"] for h in status["hosts"]):
            status["services"] = stack_status(lab)
        print(json.dumps(status, indent=2))
        return 0
    print(f"lab {status['lab']}: scenario {status['scenario']} ({status['source']}), "
          f"state in {status['state_dir']}")
    print(_platform_line(status))
    rows = [("HOST", "RUNNING", "PID", "ROLES", "ADDRESSES")]
    for h in status["hosts"]:
        addresses = " ".join(f"{i['name']}={i['address']}" for i in h["interfaces"])
        running = "yes" if h["running"] else "no"
        faults = [f["kind"] for f in h.get("faults", [])]
        if faults:
            running += f" ({', '.join(faults)})"
        rows.append((h["name"], running, str(h["pid"] or "-"),
                     ",".join(h["roles"]), addresses))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
    fwd = status["forward"]
    if fwd:
        state = "running" if fwd["running"] else "stopped"
        print(f"forward: {fwd['url']} -> {fwd['target']} as {fwd['client']} ({state})")
        for more in fwd.get("also") or []:
            print(f"forward: {more['url']} -> {more['target']} as {fwd['client']} ({state})")
    _print_management(lab)
    if any(h["running"] for h in status["hosts"]):
        _print_services(stack_status(lab))
    return 0


def _platform_line(status):
    """The machine's Debian and cgroups, the full systems' releases, what faults cannot run."""
    from quizstack import debian

    def name(codename):
        return debian.RELEASES[codename].name if codename in debian.RELEASES else (codename or "not Debian")

    machine = status["machine"]
    text = f"platform: this machine {name(machine['release'])}, cgroups {machine['cgroups']}"
    systems = {}
    for h in status["hosts"]:
        if h.get("kind") == "system":
            systems.setdefault(h["release"], []).append(h["name"])
    for codename, hosts in systems.items():
        text += f"; {name(codename)} on {', '.join(hosts)}"
    lacking = sorted(machine["faults_lacking"])
    if lacking:
        text += f"; faults unavailable here: {', '.join(lacking)} (`quizstack doctor` says why)"
    return text


def _print_management(lab):
    from quizstack.deploy.plan import build_plan

    m = build_plan(lab.topology).management
    if not m:
        return
    if m.ges:
        print(f"management: ges at {m.ges_address}:22 from the clients (`quizstack ssh [HOST]`), "
              f"every other host on {m.network} {m.subnet}")
    if m.nagios:
        print(f"monitoring: Nagios at http://{m.nagios_address}:{m.nagios_port}/nagios4/ "
              "from the clients (through the forward above)")


def stack_status(lab):
    from quizstack import stack

    return stack.service_status(lab)


def _print_services(services):
    print("services:")
    for host, programs in services["programs"].items():
        if programs:
            shown = ", ".join(f"{name} {state}" for name, state in programs.items())
            print(f"  {host}: {shown}")
    for lb, backends in services["backends"].items():
        shown = ", ".join(f"{name} {state}" for name, state in backends.items()) or "none"
        print(f"backends ({lb}): {shown}")
    for name, pair in services.get("pairs", {}).items():
        states = ", ".join(f"{host} {m['state']}" for host, m in pair["members"].items())
        holder = pair["holder"] or "split or nobody"
        print(f"pair {name}: {', '.join(pair['addresses'])} on {holder} ({states})")
    if services["volume"]:
        v = services["volume"]
        print(f"volume {v['name']}: {v['online']}/{v['bricks']} bricks online")
    if services["database"]:
        d = services["database"]
        if "members" in d:
            members = ", ".join(f"{m.get('name')} {m.get('role')} {m.get('state')}"
                                for m in d["members"]) or "Patroni does not answer"
            print(f"database {d['address']}: primary {d['primary'] or 'none'} ({members})")
        else:
            print(f"database {d['address']}: {'ready' if d['ready'] else 'not answering'}")


def cmd_exec(args):
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise QuizstackError("exec: no command given (quizstack exec HOST -- CMD...)")
    lab = _lab(args)
    argv = lab.enter_argv(args.host) + command
    env = lab.host_env({"TERM": os.environ.get("TERM", "dumb")})
    return subprocess.run(argv, env=env).returncode


def cmd_scale(args):
    """quizstack scale web=N: more or fewer app servers, while serving."""
    from quizstack import scale

    role, sep, count = args.spec.partition("=")
    if not sep or not count.strip().lstrip("-").isdigit():
        raise QuizstackError(f"scale wants ROLE=COUNT (web=4), not {args.spec!r}")
    lab = _lab(args)
    print(f"lab {lab.name}: scale {role}={int(count)}", flush=True)
    added, removed, seconds = scale.scale(lab, role.strip(), int(count), progress=_progress)
    if added or removed:
        what = "; ".join(x for x in (f"added {', '.join(added)}" if added else "",
                                     f"removed {', '.join(removed)}" if removed else "") if x)
        print(f"scale: {what} in {seconds:.1f} s; the scenario the lab runs is updated")
    return 0


def cmd_ssh(args):
    """The operators' way in: from the first client, through the firewall, to ges (and on)."""
    from quizstack import stack
    from quizstack.deploy.plan import build_plan

    lab = _lab(args)
    m = build_plan(lab.topology).management
    if not m or not m.ges:
        raise QuizstackError(f"lab {lab.name}: its scenario has no management host (ges)")
    config = stack.lab_ssh_config(lab)
    if not os.path.exists(config):
        raise QuizstackError(f"lab {lab.name}: no SSH keys yet (run `quizstack up`)")
    target = args.host or m.ges
    if target != m.ges:
        lab.topology.host(target)   # a clear error for an unknown host
        if target not in m.managed:
            raise QuizstackError(f"{target} is not on the management network: ges cannot reach it")
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    argv = ["ssh", "-F", str(config)] + (["-t"] if not command and sys.stdin.isatty() else [])
    return subprocess.run(argv + [target] + command).returncode


def cmd_shell(args):
    lab = _lab(args)
    argv = lab.enter_argv(args.host) + ["bash", "-i"]
    # Debian's bash prompt shows ($debian_chroot) and the host name (UTS):
    # "(pfinal)root@s1:/#".
    env = lab.host_env({"TERM": os.environ.get("TERM", "xterm"), "debian_chroot": lab.name})
    return subprocess.run(argv, env=env).returncode


def cmd_map(args):
    from quizstack.topology import load_scenario
    from quizstack.topology.graph import to_dot

    if args.scenario:
        topo = load_scenario(args.scenario)
    else:
        from quizstack.lab import Lab

        lab = Lab(_lab_name(args))
        topo = lab.topology if lab.exists else load_scenario(DEFAULT_SCENARIO)
    output = args.output or f"{topo.name}.svg"
    fmt = args.format or (output.rsplit(".", 1)[-1] if "." in output else "svg")
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise QuizstackError(f"map: unknown format {fmt!r} (svg, png, pdf, dot)")
    text = to_dot(topo)
    if fmt == "dot":
        with open(output, "w") as f:
            f.write(text)
    else:
        argv = ["dot", f"-T{fmt}", "-o", output]
        try:
            proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise QuizstackError("map: graphviz's `dot` is not installed (apt-get install graphviz)") from None
        if proc.returncode != 0:
            raise CommandError("map", argv, proc.returncode, proc.stdout + proc.stderr)
    print(f"map of {topo.name}: {output}")
    return 0


def cmd_export(args):
    import stat

    from quizstack.deploy.plan import build_plan
    from quizstack.export import kubernetes
    from quizstack.topology import load_scenario

    topo = load_scenario(args.scenario)
    plan = build_plan(topo)
    if args.target == "compose":
        return _export_compose(args, topo, plan)
    options = kubernetes.Options(**{k: v for k, v in (
        ("image", args.image), ("namespace", args.namespace), ("host", args.host),
        ("ingress_class", args.ingress_class), ("storage_class", args.storage_class)) if v})
    objects = [o for group in kubernetes.manifests(topo, plan, options).values() for o in group]
    if kubernetes.can_validate():
        checked = kubernetes.validate(objects, args.kubernetes_version, kubernetes.read_crds(args.crd))
    else:
        checked = ["not validated: the kubernetes-validate package is not installed"]
    os.makedirs(args.output, exist_ok=True)
    for name, text in kubernetes.files(topo, plan, options).items():
        path = os.path.join(args.output, name)
        with open(path, "w") as f:
            f.write(text)
        if name.endswith(".sh"):
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    for line in checked:
        print(f"  {line}")
    print(f"kubernetes manifests of {topo.name} in {args.output}: create the secrets with "
          f"{os.path.join(args.output, 'create-secrets.sh')}, then kubectl apply -f {args.output}")
    return 0


def _export_compose(args, topo, plan):
    from quizstack.export import compose

    options = compose.Options(**{k: v for k, v in (("name", args.name), ("port", args.port),
                                                   ("storage", args.storage)) if v is not None})
    # A bundled scenario by its name; a file by its full path (the runner reads it again).
    scenario = args.scenario if not args.scenario.endswith(".toml") else os.path.abspath(args.scenario)
    compose.write(args.output, topo, plan, options, scenario=scenario)
    print(f"compose project {compose.project_name(topo, options)} of {topo.name} in {args.output}: "
          f"quizstack compose up {args.output} (secrets in {os.path.join(args.output, 'secrets')}, 0600)")
    return 0


def cmd_compose(args):
    import time

    from quizstack.export.compose_run import Project

    project = Project(args.dir)
    progress = lambda line: print(f"  {line}", flush=True)
    if args.action == "up":
        started = time.monotonic()
        found = project.up(progress)
        print(f"compose {project.name}: up, {len(found['containers'])} containers healthy "
              f"({time.monotonic() - started:.1f} s)")
        failed = 0
        if not args.no_check:
            failed = _print_compose_checks(project)
        print(f"QUIZ is served at {found['url']} inside network namespace {found['netns']} "
              f"(e.g. nsenter --net={project.netns_path} curl {found['url']})")
        if args.forward:
            print(f"and on this machine at {project.forward(args.forward)} (a loopback forward into it)")
        return 1 if failed else 0
    if args.action == "check":
        return 1 if _print_compose_checks(project, as_json=args.json) else 0
    if args.action == "logs":
        print(project.logs(args.tail), end="")
        return 0
    started = time.monotonic()
    removed = project.down(progress)
    print(f"compose {project.name}: down ({time.monotonic() - started:.1f} s): "
          + (", ".join(removed) if removed else "nothing was left"))
    return 0


def _print_compose_checks(project, as_json=False):
    rows = project.check()
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        for r in rows:
            print(f"  {'PASS' if r.ok else 'FAIL'} {r.seconds:6.1f} s  {r.group}: {r.name:<70}  {r.detail}")
        failed = sum(not r.ok for r in rows)
        print(f"check: {len(rows) - failed} passed, {failed} failed")
    return sum(not r.ok for r in rows)


def cmd_report(args):
    from quizstack import report
    from quizstack.topology import load_scenario

    state_dir, topo = None, None
    if _named_lab(args):
        from quizstack.lab import Lab

        lab = Lab(_lab_name(args))
        if not lab.exists:
            raise QuizstackError(f"report: no lab named {lab.name}")
        state_dir, topo = lab.state_dir, lab.topology
    topo = load_scenario(args.scenario) if args.scenario else topo or load_scenario(DEFAULT_SCENARIO)
    written = report.write(topo, args.output, state_dir)
    print(f"report of {topo.name}: " + ", ".join(str(p) for p in written))
    return 0


def cmd_chaos(args):
    action = args.chaos_command
    if action == "list":
        from quizstack.chaos.experiments import EXPERIMENTS

        for experiment in EXPERIMENTS.values():
            print(f"  {experiment.name:<13} {experiment.summary}")
        print(f"  {'random':<13} kill and heal one host at a time, at random "
              "(--minutes M --seed S)")
        return 0
    lab = _lab(args)
    if action == "faults":
        faults = lab.faults()
        for fault in faults:
            params = " ".join(f"{k}={fault[k]}" for k in ("cpu", "service") if fault.get(k))
            print(f"  {fault['host']}: {fault['kind']} {params}".rstrip())
        if not faults:
            print("no active fault")
        return 0
    if action == "heal":
        healed = lab.heal(args.host, progress=_progress)
        shown = ", ".join(f"{f['kind']} {f['host']}" for f in healed)
        print(f"healed: {shown}" if healed else "nothing to heal")
        return _wait_served_again(lab) if healed else 0
    if action == "run":
        return _chaos_run(lab, args)
    params = {}
    if action == "slow":
        params["cpu"] = args.cpu
    if action == "stop":
        params["service"] = args.service
    fault = lab.inject(action, args.host, **params)
    print(f"{action} {args.host}: done (heal with `quizstack chaos heal {args.host}`)")
    return 0 if fault else 1


def _wait_served_again(lab, timeout=90.0):
    """After a heal, until the service is whole again as the balancers, the pairs, the
    database and the volume see it (a healed server is back only once HAProxy's
    checks say UP): what `check` would otherwise count too early."""
    from quizstack import stack
    from quizstack.chaos import watch
    from quizstack.deploy.plan import build_plan

    if not stack.is_deployed(lab):
        return 0
    _progress("waiting until the service is whole again (every server UP, pairs, database, volume)")
    seconds, left = watch.wait_steady(lab, build_plan(lab.topology), timeout=timeout)
    if left:
        print(f"chaos heal: the service is not whole {seconds:.0f} s later: {'; '.join(left)}",
              file=sys.stderr)
        return 1
    print(f"service whole again {seconds:.1f} s after the heal")
    return 0


def _chaos_run(lab, args):
    from quizstack.chaos import report, runner

    settings = runner.Settings(warmup=args.warmup, hold=args.hold, after=args.after,
                               rate=args.rate, workers=args.workers, writes=args.writes,
                               seed=args.seed)
    progress = (lambda message: None) if args.json else _progress
    if not args.json:
        print(f"lab {lab.name}: chaos run {args.name}", flush=True)
    if args.name == "random":
        spare = [h for h in (args.spare or "").split(",") if h]
        result = runner.run_random(lab, args.minutes, args.seed if args.seed is not None else 1,
                                   settings, progress, spare=spare)
    else:
        result = runner.run(lab, args.name, settings, progress)
    if args.plot:
        from quizstack.chaos.plot import timeline_svg

        requests, _ = _run_records(result)
        with open(args.plot, "w") as f:
            f.write(timeline_svg(requests, result["events"], f"{args.name} ({result['run']})"))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for line in report.lines(result["summary"]):
            print(f"  {line}")
        for item in result["lost"]:
            what = item.get("id") or item.get("quiz")
            print(f"  LOST {item.get('ack')} {what}: {item.get('why')}")
        print(f"records: {result['folder']}" + (f"; timeline: {args.plot}" if args.plot else ""))
    return 0 if not result["lost"] else 1


def _run_records(result):
    requests, acks = [], []
    for path in sorted(Path(result["folder"]).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            (acks if "ack" in item else requests).append(item)
    return [r for r in requests if "kind" in r], acks


def cmd_db(args):
    from quizstack import stack
    from quizstack.deploy.plan import build_plan

    lab = _lab(args)
    old, new = stack.db_switchover(lab, build_plan(lab.topology), args.candidate)
    print(f"database: switched over from {old} to {new}")
    return 0


def cmd_logs(args):
    """The central logs, read on the logs host (quizstack.logs)."""
    from quizstack import logs
    from quizstack.deploy.plan import build_plan

    lab = _lab(args)
    plan = build_plan(lab.topology)
    since = args.since if args.since is not None else (None if args.request else "10m")
    ask = dict(hosts=args.hosts, since=since, grep=args.grep, request=args.request)
    if args.follow:
        return logs.follow(lab, plan, **ask)
    for line in logs.read(lab, plan, **ask):
        print(line)
    return 0


def cmd_open(args):
    url = _lab(args).open_forward(port=args.port, client=args.client)
    print(url)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="quizstack",
        description="Deploy the QUIZ service on a lab of namespaces or on real hosts, and prove it.",
    )
    parser.add_argument("--lab", metavar="NAME",
                        help="lab name (default: $QUIZSTACK_LAB, else the scenario's name for up, "
                        "else the only lab there is, else " + DEFAULT_SCENARIO + ")")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def lab_command(name, func, help):
        p = sub.add_parser(name, help=help)
        # Also accepted after the command; SUPPRESS keeps a global --lab.
        p.add_argument("--lab", metavar="NAME", default=argparse.SUPPRESS, help="lab name")
        p.set_defaults(func=func)
        return p

    up = lab_command("up", cmd_up, "create the lab if needed, deploy everything, check it")
    up.add_argument("scenario", nargs="?", default=None,
                    help="bundled scenario name (complete, pfinal) or .toml file (default: the "
                         f"lab's own if it exists, else {DEFAULT_SCENARIO})")
    up.add_argument("--port", type=int, default=8080, help="loopback port of the service (8080)")
    up.add_argument("--no-check", action="store_true", help="skip the checks at the end")
    up.add_argument("--full", action="store_true",
                    help="deploy every role even when nothing changed since the last deployment "
                         "(by default that is verified instead: files and programs on every host)")
    dr = sub.add_parser("doctor", help="what this machine lacks for the lab, one line each, "
                                       "and how to get it")
    dr.add_argument("--json", action="store_true", help="machine-readable output")
    dr.set_defaults(func=cmd_doctor)
    dp = sub.add_parser("deploy", help="deploy on real hosts over SSH (no lab)")
    dp.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO,
                    help=f"bundled scenario name or .toml file (default {DEFAULT_SCENARIO})")
    dp.add_argument("--host", action="append", default=[], metavar="NAME=ADDRESS",
                    help="where a scenario host is reached (default: its first address)")
    dp.add_argument("--ssh-user", default="root")
    dp.add_argument("--ssh-key", help="private key file")
    dp.add_argument("--ssh-port", type=int)
    dp.add_argument("--ssh-config", help="an ssh_config file (ProxyCommand, ProxyJump, ...)")
    dp.add_argument("--known-hosts", help="known_hosts file (default ~/.ssh/known_hosts)")
    dp.add_argument("--secrets", help="folder for the generated secrets and SSH keys "
                                      "(~/.quizstack/SCENARIO)")
    dp.add_argument("--direct", action="store_true",
                    help="reach each host at its address, not through ges (the first deployment "
                         "of a scenario with a management host, before ges takes the keys)")
    dp.add_argument("--venv", help="quizstack's Python environment on the app servers "
                    "(default: this one's path)")
    dp.set_defaults(func=cmd_deploy)
    ck = lab_command("check", cmd_check, "verify every requirement from the clients' side")
    ck.add_argument("--json", action="store_true", help="machine-readable output")
    ck.add_argument("--ports", default="1-65535", help="TCP ports the scans cover (all)")
    lab_command("stop", cmd_stop, "power every host off, keeping its files")
    lab_command("start", cmd_start, "power the hosts on again, with their files")
    lab_command("destroy", cmd_destroy, "remove everything the lab created")
    lab_command("secrets", cmd_secrets, "the logins for people: QUIZ's administrator, Nagios")
    status = lab_command("status", cmd_status, "hosts, addresses, running or not")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    ex = lab_command("exec", cmd_exec, "run a command on a host: exec HOST -- CMD...")
    ex.add_argument("host")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    sc = lab_command("scale", cmd_scale, "more or fewer app servers while serving: scale web=N")
    sc.add_argument("spec", metavar="web=N")
    ss = lab_command("ssh", cmd_ssh, "log in as an operator: from c1 through the firewall to "
                                     "ges, by key (and on to HOST through ges)")
    ss.add_argument("host", nargs="?", help="a host to reach through ges (default: ges itself)")
    ss.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    sh = lab_command("shell", cmd_shell, "an interactive shell on a host")
    sh.add_argument("host")
    mp = lab_command("map", cmd_map, "draw the topology (SVG by default) with graphviz")
    mp.add_argument("scenario", nargs="?",
                    help=f"scenario (default: the lab's, else {DEFAULT_SCENARIO})")
    mp.add_argument("--output", "-o", help="output file (default <scenario>.svg)")
    mp.add_argument("--format", choices=["svg", "png", "pdf", "dot"],
                    help="default: from the output's extension")
    lg = lab_command("logs", cmd_logs, "every host's logs, from the logs host, in time order")
    lg.add_argument("hosts", nargs="*", metavar="HOST", help="only these hosts (default: all)")
    lg.add_argument("--since", help="a duration back (10m, 90s, 2h) or a UTC time (default 10m; "
                                    "with --request, everything)")
    lg.add_argument("--grep", metavar="RE", help="only lines matching this regular expression")
    lg.add_argument("--request", metavar="ID", help="every line of one request (its X-Request-ID)")
    lg.add_argument("--follow", "-f", action="store_true", help="then print new lines as they come")
    ex = sub.add_parser("export", help="the service for another platform, from the scenario")
    ex_sub = ex.add_subparsers(dest="target", metavar="TARGET")
    ex_sub.required = True
    k8s = ex_sub.add_parser("kubernetes", help="Kubernetes manifests, validated offline")
    k8s.add_argument("scenario", help="bundled scenario name or .toml file")
    k8s.add_argument("--output", "-o", required=True, metavar="DIR")
    k8s.add_argument("--image", help="QUIZ's image (quizstack/quiz:<version>)")
    k8s.add_argument("--namespace", help="default quiz-<scenario>")
    k8s.add_argument("--host", help="the Ingress's host name (default: any)")
    k8s.add_argument("--ingress-class", help="default nginx")
    k8s.add_argument("--storage-class", help="a ReadWriteMany class for the uploads (and the database)")
    k8s.add_argument("--kubernetes-version", default="1.32", help="schemas to validate against (1.32)")
    k8s.add_argument("--crd", action="append", default=[], metavar="FILE",
                     help="CRDs (YAML) to validate custom resources against, e.g. CloudNativePG's")
    k8s.set_defaults(func=cmd_export)
    cp = ex_sub.add_parser("compose", help="a Docker Compose project (run it with `quizstack compose up DIR`)")
    cp.add_argument("scenario", help="bundled scenario name or .toml file")
    cp.add_argument("--output", "-o", required=True, metavar="DIR")
    cp.add_argument("--name", help="the Compose project's name (default quiz-<scenario>)")
    cp.add_argument("--port", type=int, help="the published port on 127.0.0.1 (8080)")
    cp.add_argument("--storage", choices=("glusterfs", "volume"),
                    help="the uploads on GlusterFS containers as in the lab (default), or on one "
                         "shared volume")
    cp.set_defaults(func=cmd_export)
    co = sub.add_parser("compose", help="run a Compose export here: a Docker daemon of its own, "
                                        "in a network namespace")
    co_sub = co.add_subparsers(dest="action", metavar="ACTION")
    co_sub.required = True
    for action, text in (("up", "start the daemon, build the image, docker-compose up, wait "
                                "healthy, check"),
                         ("check", "the HTTP checks: balancing, the image shared, the database"),
                         ("logs", "the containers' logs"),
                         ("down", "remove everything up made: containers, volumes, daemon, namespace")):
        a = co_sub.add_parser(action, help=text)
        a.add_argument("dir", metavar="DIR", help="the directory `export compose` wrote")
        a.set_defaults(func=cmd_compose)
        if action == "up":
            a.add_argument("--no-check", action="store_true", help="skip the checks at the end")
            a.add_argument("--forward", type=int, metavar="PORT",
                           help="also serve it on this machine's 127.0.0.1:PORT (a forward into "
                                "the namespace; down stops it)")
        if action == "check":
            a.add_argument("--json", action="store_true", help="machine-readable output")
        if action == "logs":
            a.add_argument("--tail", default="100", help="lines per container (100; all)")
    rp = lab_command("report", cmd_report, "the deliverable: architecture, hosts, packages, files, "
                                           "steps, checks, weak points (Markdown and HTML)")
    rp.add_argument("scenario", nargs="?", help="scenario (default: the --lab's, else "
                                                f"{DEFAULT_SCENARIO})")
    rp.add_argument("--output", "-o", required=True, metavar="DIR")
    op = lab_command("open", cmd_open, "the service on 127.0.0.1:PORT, entering the lab as a client")
    op.add_argument("--port", type=int, default=8080)
    op.add_argument("--client", help="client host to enter as (default: the first client)")

    chaos = lab_command("chaos", cmd_chaos, "inject faults, run fault experiments under load")
    chaos_sub = chaos.add_subparsers(dest="chaos_command", metavar="ACTION")
    chaos_sub.required = True
    for kind, text in (("kill", "power cut: every process killed, links down"),
                       ("cut", "links down: a partition"),
                       ("freeze", "every process stopped: a hung host"),
                       ("slow", "a CPU quota on the host's processes"),
                       ("stop", "stop one service of the host")):
        fault = chaos_sub.add_parser(kind, help=text)
        fault.add_argument("host")
        if kind == "slow":
            fault.add_argument("--cpu", type=int, required=True, metavar="PERCENT",
                               help="share of one CPU the host may use (1-100)")
        if kind == "stop":
            fault.add_argument("service", help="the program under the host's init (quiz, haproxy, ...)")
    heal = chaos_sub.add_parser("heal", help="undo the faults of a host, or all")
    heal.add_argument("host", nargs="?")
    chaos_sub.add_parser("faults", help="the active faults")
    chaos_sub.add_parser("list", help="the built-in experiments")
    crun = chaos_sub.add_parser("run", help="an experiment under load, measured from the clients")
    crun.add_argument("name", help="web-kill, web-stop, web-freeze, storage-kill, lb-kill, "
                      "fw-kill, db-kill, db-cut, db-freeze, db-switchover, or random")
    crun.add_argument("--hold", type=float, default=10.0, help="seconds the fault lasts (10)")
    crun.add_argument("--warmup", type=float, default=5.0, help="seconds of load before it (5)")
    crun.add_argument("--after", type=float, default=5.0,
                      help="seconds of load once the service converged (5)")
    crun.add_argument("--rate", type=float, default=20.0, help="requests/s from each client (20)")
    crun.add_argument("--workers", type=int, default=8, help="users at once on each client (8)")
    crun.add_argument("--writes", type=float, default=0.15, help="share of writing actions (0.15)")
    crun.add_argument("--minutes", type=float, default=10.0, help="random: how long (10)")
    crun.add_argument("--seed", type=int, help="random: the schedule's seed (1)")
    crun.add_argument("--spare", metavar="HOST,...", help="random: hosts never to kill")
    crun.add_argument("--json", action="store_true", help="the whole result as JSON")
    crun.add_argument("--plot", metavar="FILE.svg", help="draw the timeline")

    dbc = lab_command("db", cmd_db, "operate the replicated database")
    db_sub = dbc.add_subparsers(dest="db_command", metavar="ACTION")
    db_sub.required = True
    switch = db_sub.add_parser("switchover", help="move the primary to the standby, planned")
    switch.add_argument("--candidate", help="the standby to promote (default: the synchronous one)")

    app = sub.add_parser("app", help="run the QUIZ application itself (needs DATABASE_URL)")
    app_sub = app.add_subparsers(dest="app_command", metavar="ACTION")
    app_sub.required = True
    serve = app_sub.add_parser("serve", help="serve QUIZ with gunicorn")
    serve.add_argument("--bind", default="127.0.0.1:8000")
    serve.add_argument("--workers", type=int, default=2)
    app_sub.add_parser("migrate", help="apply database migrations (safe on many servers at once)")
    seed = app_sub.add_parser("seed", help="load the seed's quizzes and the administrator "
                              "(QUIZ_ADMIN_PASSWORD_HASH; demo users only with QUIZ_DEMO_USERS=1); "
                              "idempotent")
    seed.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 if the seed would change something")
    app.set_defaults(func=cmd_app)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except QuizstackError as exc:
        print(f"quizstack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("quizstack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
