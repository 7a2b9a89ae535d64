"""bbdd, bbdd2 (+ witness): PostgreSQL replicated with automatic failover.

A scenario with several database hosts gets a cluster instead of a single
server. Patroni runs PostgreSQL on each database host: one primary, the
others streaming standbys, one of them synchronous (a commit is acknowledged
only once the standby has it). Patroni keeps its leader lease in etcd, whose
members are the scenario's consensus hosts: an odd number, so a majority
survives any single host's loss. When the primary's lease lapses (its host
dead, cut off or hung) the standby is promoted; a returning old primary is
rewound (pg_rewind) into a standby by Patroni itself. The app servers list
every database host in their connection string and keep the one that
accepts writes.

The app's role and database are created on whichever host is primary when
the role runs; they reach the standbys by replication.

Patroni's REST API answers anyone's GETs (the app servers' routers ask it
who is primary) but takes a change only with the lab's patroni_api_password
and from a database host (render.patroni_yml): an app server taken over
could otherwise reconfigure or switch over the cluster.
"""

from pyinfra import host
from pyinfra.api import operation

from quizstack.deploy import db, ops, render
from quizstack.deploy.roles import Phase, install_probe, scenario_host

ETCD_ENV = "/etc/default/etcd"
PATRONI_CONF = "/etc/patroni/config.yml"


def phases(plan, context):
    consensus = tuple(name for name, _ in plan.consensus_hosts)
    return [
        Phase("consensus", "etcd", consensus, add_etcd_ops),
        Phase("database", "patroni", plan.database_hosts, add_patroni_ops,
              needs=("consensus: etcd",)),
        # Named like the single server's phase: the first migration waits for it.
        Phase("database", "postgresql", plan.database_hosts, add_app_database_ops,
              needs=("database: patroni",)),
    ]


def add_etcd_ops(plan, context):
    me = scenario_host()
    env = ops.config_file(ETCD_ENV, render.etcd_environment(plan, me), name="etcd settings")
    ops.directory("/var/lib/etcd/quizstack", mode="700", user="etcd", group="etcd",
                  name="etcd data directory")
    ops.service("etcd", f"/bin/sh -c 'set -a; . {ETCD_ENV}; set +a; exec /usr/bin/etcd'",
                user="etcd", unit="etcd", restart=(env,), priority=100, name="etcd service")
    # Every member starts in this phase at once; each is healthy once a majority formed.
    ops.wait_until(f"ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:{render.ETCD_CLIENT_PORT} "
                   "endpoint health", "etcd to reach a majority", timeout=60,
                   name="wait: etcd healthy")


def _postgres_version():
    versions = host.get_fact(ops.Lines, command="ls /usr/lib/postgresql")
    versions = sorted((v for v in versions if v.strip().isdigit()), key=int)
    if not versions:
        raise ValueError("PostgreSQL is not installed (no /usr/lib/postgresql/<version>)")
    return versions[-1]


def add_patroni_ops(plan, context):
    me = scenario_host()
    if not context.secrets.get("patroni_api_password"):
        # Without it the REST API would take changes from anyone who reaches it.
        raise ValueError("no patroni_api_password among the lab's secrets")
    version = _postgres_version()
    ops.directory(f"/var/lib/postgresql/{version}", mode="755", user="postgres", group="postgres",
                  name="PostgreSQL's directory")
    conf = ops.config_file(PATRONI_CONF, render.patroni_yml(plan, me, context.secrets, version),
                           mode="600", user="postgres", group="postgres", name="patroni.yml")
    # /run starts empty at each boot: PostgreSQL's socket directory is made first.
    ops.service("patroni", "/bin/sh -c 'install -d -o postgres -g postgres -m 2775 /run/postgresql "
                "&& exec setpriv --reuid=postgres --regid=postgres --init-groups "
                f"/usr/bin/patroni {PATRONI_CONF}'", unit="patroni", reload=(conf,), priority=150,
                name="patroni service")
    own = plan.database_addresses[plan.database_hosts.index(me)]
    http_ok = install_probe("http_ok")
    ops.wait_until(f"{http_ok} http://{own}:{render.PATRONI_API_PORT}/health",
                   f"PostgreSQL running under Patroni on {me}", timeout=120,
                   name="wait: postgresql running")


class IsPrimary(ops.FactBase):
    """Whether the local PostgreSQL accepts writes (not in recovery)."""

    def command(self):
        return ("runuser -u postgres -- psql -X -A -t -c 'select not pg_is_in_recovery()' "
                "2>/dev/null || echo f")

    def process(self, output):
        return bool(output) and output[0].strip() == "t"


@operation()
def on_primary_only(inner, *args, **kwargs):
    """Run another operation's commands only where PostgreSQL is the primary."""
    if not host.get_fact(IsPrimary):
        return
    yield from inner._inner(*args, **kwargs)


def add_app_database_ops(plan, context):
    ready = install_probe("patroni_ready")
    me = scenario_host()
    own = plan.database_addresses[plan.database_hosts.index(me)]
    ops.wait_until(f"{ready} http://{own}:{render.PATRONI_API_PORT}/cluster "
                   f"{len(plan.database_hosts)}",
                   "a primary and every standby streaming, one of them synchronous", timeout=120,
                   name="wait: cluster ready")
    on_primary_only(db.role, plan.database_user, context.secrets["database_password"],
                    name=f"role {plan.database_user}")
    on_primary_only(db.database, plan.database_name, plan.database_user,
                    name=f"database {plan.database_name}")
