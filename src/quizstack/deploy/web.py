"""s1–s3: the QUIZ application servers, stateless.

Each server mounts the GlusterFS volume (every storage node named as a
volfile server, so no single node is needed to mount), keeps the uploads in
its `media` folder — a folder that exists only on the volume, so a server
whose mount is missing fails its health check instead of writing locally —
and runs gunicorn with the database URL and secrets from a 0600 environment
file. The first server applies migrations and the seed; the application's own
locking makes that safe even if every server did it at once. When the
scenario balances by load, each server also runs the load agent HAProxy asks
for its state and weight (probes/agent.py), started with gunicorn, before the
load balancers' configuration names it.
"""

import shlex

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from quizstack.deploy import ops, probes, render, ship
from quizstack.deploy.roles import PROBE_DIR, Phase, install_probe, scenario_host

ENV_FILE = "/etc/quiz/quiz.env"
# QUIZ's /healthz says "draining" while this file exists (quiz.middleware).
DRAIN_FILE = "/run/quiz/draining"
DRAIN = f"mkdir -p {DRAIN_FILE.rsplit('/', 1)[0]} && touch {DRAIN_FILE}"   # shell: drain this server
# HAProxy marks a server DOWN after 2 failed checks 0.5 s apart and UP again
# after 2 good ones 1 s apart (render.haproxy_cfg): the waits cover both.
DRAIN_SECONDS = 2.0
READY_SECONDS = 3.0
UP_AGAIN = ("import sys, urllib.request, urllib.error\n"
            "try:\n    urllib.request.urlopen(sys.argv[1], timeout=2)\n"
            "except urllib.error.HTTPError as exc:\n"
            "    sys.exit(0 if b'draining' in exc.read() else 1)\n"
            "except Exception:\n    sys.exit(1)\n")
GUNICORN_CONF = "/etc/quiz/gunicorn.conf.py"
AGENT = f"{PROBE_DIR}/agent.py"


def phases(plan, context):
    database = "database: postgresql"
    found = [
        Phase("web", "configure", plan.web_hosts, add_config_ops),
        Phase("web", "mount", plan.web_hosts, add_mount_ops, needs=("storage: volume",)),
    ]
    if plan.replicated:
        found.append(Phase("web", "database router", plan.web_hosts, add_router_ops,
                           needs=(database,)))
        database = "web: database router"
    return found + [
        Phase("web", "migrate", plan.web_hosts[:1], add_migrate_ops,
              needs=(database, "web: configure")),
        Phase("web", "gunicorn", plan.web_hosts, add_server_ops,
              needs=("web: configure", "web: mount", "web: migrate")),
    ]


def shares_our_files():
    """A namespace lab host (supervisord) sees the operator's environment; others get a release."""
    return host.get_fact(ops.InitSystem) == "supervisord"


def _venv(context):
    return context.venv if shares_our_files() else ship.CURRENT


def _with_env(context, command):
    return f"sh -c 'set -a; . {ENV_FILE}; set +a; exec {_venv(context)}/bin/{command}'"


@operation()
def fstab_entry(line, mount_point):
    entries = host.get_fact(ops.Lines, command="cat /etc/fstab")
    if line.rstrip("\n") in (e.rstrip("\n") for e in entries):
        return
    others = [e for e in entries if len(e.split()) < 2 or e.split()[1] != mount_point]
    text = "\n".join(others + [line.rstrip("\n")]) + "\n"
    yield StringCommand("sh", "-c", f"cat > /etc/fstab.quizstack-new <<'EOF'\n{text}EOF\n"
                        "mv /etc/fstab.quizstack-new /etc/fstab")


def add_mount_ops(plan, context):
    if host.get_fact(ops.InitSystem) == "supervisord":
        ops.service("nas-mount", render.glusterfs_client_command(plan), priority=200,
                    name="volume mount (supervised glusterfs client)")
    else:
        ops.directory(plan.mount, name="mount point")
        fstab_entry(render.fstab_line(plan), plan.mount, name="fstab entry")
        unit = ops.config_file("/etc/systemd/system/quiz-volume.service",
                               render.volume_systemd_unit(plan.mount), name="quiz-volume unit")
        reload_units(unit, name="systemd daemon-reload")
        ops.service("quiz-volume", "", unit="quiz-volume", oneshot=True, restart=(unit,),
                    name="volume mount (tried until the storage answers)")
    ops.wait_until(f"mountpoint -q {plan.mount}", f"{plan.volume} mounted on {plan.mount}",
                   name="wait: volume mounted")
    ops.directory(plan.media_root, user="www-data", group="www-data", name="media root on the volume")


def _backend(plan):
    return next(b for b in plan.backends if b.name == scenario_host())


def ancestors(paths):
    """Every directory above `paths` (and they themselves), outermost first, / excluded."""
    found = []
    for path in paths:
        parts = path.rstrip("/").split("/")
        for i in range(2, len(parts) + 1):
            directory = "/".join(parts[:i])
            if directory not in found:
                found.append(directory)
    return found


@operation()
def searchable(paths):
    """Let other users pass through (o+x, not read) every directory down to `paths`.

    gunicorn's workers run as www-data; a checkout in root's home (mode 0700)
    would otherwise hide the code from them. Search permission only lets a
    user open paths it already knows; nothing becomes listable.
    """
    directories = ancestors(paths)
    lines = host.get_fact(ops.Lines, command="stat -c '%a %n' " + " ".join(
        shlex.quote(d) for d in directories))
    closed = [name for mode, _, name in (line.partition(" ") for line in lines)
              if mode.isdigit() and not int(mode[-1]) & 1]
    if closed:
        yield StringCommand("chmod", "o+x", *closed)


@operation()
def runs_as_www_data(venv):
    if host.get_fact(ops.Succeeds, command=(
            f"runuser -u www-data -- {venv}/bin/python -c 'import django, quiz'")):
        return
    message = (f"www-data cannot run QUIZ from {venv}: the environment and the code must be "
               "readable by other users and visible in the hosts (a checkout in /tmp is hidden "
               "from lab hosts whose state root is also in /tmp)")
    yield f"echo {shlex.quote(message)} >&2; exit 1"


def add_config_ops(plan, context):
    shipped = ()
    if shares_our_files():
        searchable(context.app_paths, name="app code reachable by www-data")
    else:
        shipped = (ship.add_ops(ship.release_for(context)),)
    runs_as_www_data(_venv(context), name="www-data can run QUIZ")
    env = ops.config_file(ENV_FILE, render.env_file(render.app_environment(plan, context.secrets)),
                          mode="600", name="environment file")
    conf = ops.config_file(GUNICORN_CONF, render.gunicorn_conf(plan, _backend(plan)), mode="644",
                           name="gunicorn settings")
    # The server phase restarts gunicorn if any changed (a new release included).
    context.changes[(scenario_host(), "quiz")] = (env, conf) + shipped


def add_router_ops(plan, context):
    """The local router to the primary database (render.db_router_cfg says why)."""
    up = install_probe("backends_up")
    cfg = ops.config_file(render.DB_ROUTER_CONF, render.db_router_cfg(plan),
                          check=["haproxy", "-c", "-q", "-f", "{}"], name="database router settings")
    command = f"/usr/sbin/haproxy -W -db -f {render.DB_ROUTER_CONF}"
    restart = (cfg,)
    if host.get_fact(ops.InitSystem) == "systemd":
        unit = ops.config_file("/etc/systemd/system/quiz-db-router.service",
                               render.db_router_systemd_unit(command), name="quiz-db-router unit")
        reload_units(unit, name="systemd daemon-reload")
        restart += (unit,)
    # /run starts empty at boot: the socket's directory is made at each start.
    ops.service("quiz-db-router", "/bin/sh -c 'mkdir -p /run/quiz-db && exec "
                f"{command}'", unit="quiz-db-router", restart=restart, priority=250,
                name="database router service")
    ops.wait_until(f"{up} {render.DB_ROUTER_SOCKET} postgres 1",
                   "the router to find the primary database", name="wait: primary found")


def add_migrate_ops(plan, context):
    migrate = _with_env(context, "quizstack app migrate")
    seed = _with_env(context, "quizstack app seed")
    # The seed is checked on every deployment, not only with a migration: a
    # password it must replace (the seed's published one) is replaced at once.
    check = (_with_env(context, "django-admin migrate --check") + " && "
             + _with_env(context, "quizstack app seed --check"))
    ensure_migrated(check, f"{migrate} && {seed}", name="migrate and seed")


@operation()
def reload_units(unit_file):
    if unit_file.did_change():
        yield "systemctl daemon-reload"


@operation()
def ensure_migrated(check, command):
    if host.get_fact(ops.Succeeds, command=check):
        return
    yield command


def restart_script(init, health_url):
    """Drain, restart, wait for the new server, undrain: the shell text (pure)."""
    restart = "systemctl restart quiz" if init == "systemd" else "supervisorctl restart quiz"
    up_again = f"python3 -c {shlex.quote(UP_AGAIN)} {health_url}"
    return (f"{DRAIN} && sleep {DRAIN_SECONDS} && "
            f"{restart} >/dev/null && i=0; until {up_again}; do i=$((i+1)); "
            f"if [ $i -ge 300 ]; then rm -f {DRAIN_FILE}; echo 'QUIZ did not come back' >&2; exit 1; fi; "
            f"sleep 0.2; done; rm -f {DRAIN_FILE} && sleep {READY_SECONDS}")


@operation()
def drained_restart(restart, health_url):
    """A running server whose files or release changed, restarted without failing a request.

    Its health check says "draining" first, so the load balancers stop sending
    it requests while those it has finish; then it restarts, and it is ready
    again before the next server's turn (the operation runs host by host).
    """
    if not any(op.did_change() for op in restart):
        return
    init = host.get_fact(ops.InitSystem)
    if init == "systemd":
        running = host.get_fact(ops.Succeeds, command="systemctl is-active --quiet quiz")
    else:
        running = host.get_fact(ops.SupervisorState, program="quiz") == "RUNNING"
    if not running:
        return      # the service operation starts it
    yield StringCommand("sh", "-c", QuoteString(restart_script(init, health_url)))


def add_server_ops(plan, context):
    backend = _backend(plan)
    http_ok = install_probe("http_ok")
    restart = context.changes.get((backend.name, "quiz"), ())
    gunicorn = f"gunicorn -c {GUNICORN_CONF} quiz.wsgi:application"
    if host.get_fact(ops.InitSystem) == "systemd":
        # Debian ships no unit for the app: write one (systemd reads the env file itself).
        unit = ops.config_file("/etc/systemd/system/quiz.service",
                               render.quiz_systemd_unit(f"{_venv(context)}/bin/{gunicorn}"),
                               name="quiz.service unit")
        reload_units(unit, name="systemd daemon-reload")
        restart = tuple(restart) + (unit,)
    health = f"http://{backend.address}:{plan.app_port}/healthz"
    drained_restart(restart, health, name="restart, drained first (server by server)", _serial=True)
    ops.service("quiz", _with_env(context, gunicorn), unit="quiz", priority=300,
                name="gunicorn service")
    ops.wait_until(f"{http_ok} http://{backend.address}:{plan.app_port}/healthz",
                   f"QUIZ healthy on {backend.address}:{plan.app_port}", name="wait: server healthy")
    if plan.balance == "load":
        add_agent_ops(plan, context, backend)


def agent_command(plan, backend):
    """The load agent's command line: where it listens, what it measures."""
    database = (f"{render.DB_ROUTER_ADDRESS}:{plan.database_port}" if plan.replicated
                else f"{plan.database_address}:{plan.database_port}")
    threads = plan.workers * max(1, plan.threads)
    return (f"/usr/bin/python3 {AGENT} --listen {backend.address}:{render.AGENT_PORT} "
            f"--health http://{backend.address}:{plan.app_port}/healthz "
            f"--mount {plan.mount} --media {plan.media_root} --database {database} "
            f"--app-port {plan.app_port} --threads {threads}")


def add_agent_ops(plan, context, backend):
    """The load agent, as www-data (it checks the media folder as the app would use it)."""
    program = ops.config_file(AGENT, probes.source("agent"), name="load agent program")
    command = agent_command(plan, backend)
    restart = (program,)
    if host.get_fact(ops.InitSystem) == "systemd":
        unit = ops.config_file("/etc/systemd/system/quiz-agent.service",
                               render.agent_systemd_unit(command), name="quiz-agent.service unit")
        reload_units(unit, name="systemd daemon-reload")
        restart += (unit,)
    ops.service("quiz-agent", command, user="www-data", unit="quiz-agent", restart=restart,
                priority=310, name="load agent service")
    ops.wait_until(f"/usr/bin/python3 {AGENT} --ask {backend.address}:{render.AGENT_PORT}",
                   f"the load agent answering on {backend.address}:{render.AGENT_PORT}",
                   name="wait: load agent answers")
