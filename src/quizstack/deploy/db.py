"""bbdd: PostgreSQL holding QUIZ's data, reachable only by the app servers.

A cluster of its own (Debian's `pg_createcluster`, standard paths under
/etc/postgresql and /var/lib/postgresql) listening only on the address the app
servers use; pg_hba admits the app role from their subnet with SCRAM, nothing
with trust. The role's password is set as a SCRAM verifier, so the clear
password never travels to this host.
"""

from pyinfra import host
from pyinfra.api import StringCommand, operation

from quizstack.deploy import ops, render
from quizstack.deploy.roles import Phase
from quizstack.deploy.secrets import scram_verifier, verifier_matches


def phases(plan, context):
    if plan.replicated:
        from quizstack.deploy import dbcluster

        return dbcluster.phases(plan, context)
    return [Phase("database", "postgresql", (plan.database_host,), add_ops)]


def _quote_literal(text):
    return "'" + text.replace("'", "''") + "'"


def _psql_value(query, database="postgres"):
    lines = host.get_fact(ops.Lines, command=(
        f"runuser -u postgres -- psql -X -A -t -d {database} -c \"{query}\""))
    return lines[0].strip() if lines and lines[0].strip() else None


@operation()
def cluster(version, cluster_name, port):
    listed = host.get_fact(ops.Lines, command="pg_lsclusters -h")
    if any(line.split()[:2] == [version, cluster_name] for line in listed):
        return
    yield StringCommand("pg_createcluster", "--port", str(port), version, cluster_name)


# The app's role's own bounds, whatever a session asks: a runaway statement ends
# (a migration's lock wait included, far above any), and an open transaction
# left idle by a hung server releases its locks within seconds.
ROLE_SETTINGS = {"statement_timeout": "60s", "idle_in_transaction_session_timeout": "5s"}


@operation()
def role(role_name, password):
    stored = _psql_value(f"select rolpassword from pg_authid where rolname = '{role_name}'")
    if not (stored and verifier_matches(stored, password)):
        exists = _psql_value(f"select 1 from pg_roles where rolname = '{role_name}'")
        verb = "ALTER" if exists else "CREATE"
        statement = f"{verb} ROLE {role_name} LOGIN PASSWORD {_quote_literal(scram_verifier(password))}"
        yield from ops.sql._inner(statement, masked=True)
    settings = _psql_value("select array_to_string(setconfig, ',') from pg_db_role_setting s "
                           f"join pg_roles r on r.oid = s.setrole where r.rolname = '{role_name}' "
                           "and s.setdatabase = 0") or ""
    have = dict(item.split("=", 1) for item in settings.split(",") if "=" in item)
    for name, value in ROLE_SETTINGS.items():
        if have.get(name) != value:
            yield from ops.sql._inner(f"ALTER ROLE {role_name} SET {name} = '{value}'")


@operation()
def database(db_name, owner):
    if _psql_value(f"select 1 from pg_database where datname = '{db_name}'"):
        return
    yield StringCommand("runuser", "-u", "postgres", "--", "createdb", "-O", owner, db_name)


def add_ops(plan, context):
    versions = host.get_fact(ops.Lines, command="ls /usr/lib/postgresql")
    versions = sorted((v for v in versions if v.strip().isdigit()), key=int)
    if not versions:
        raise ValueError("PostgreSQL is not installed (no /usr/lib/postgresql/<version>)")
    version, cluster_name = versions[-1], plan.database_cluster
    etc = f"/etc/postgresql/{version}/{cluster_name}"

    cluster(version, cluster_name, plan.database_port, name=f"cluster {version}/{cluster_name}")
    conf = ops.config_file(path=f"{etc}/conf.d/quizstack.conf", content=render.postgresql_conf(plan),
                           mode="644", user="postgres", group="postgres",
                           name="postgresql.conf drop-in")
    hba = ops.config_file(path=f"{etc}/pg_hba.conf", content=render.pg_hba_conf(plan),
                          mode="640", user="postgres", group="postgres", name="pg_hba.conf")
    ops.service("postgresql", f"/usr/bin/pg_ctlcluster --foreground {version} {cluster_name} start",
                unit=f"postgresql@{version}-{cluster_name}", restart=(conf, hba),
                stopsignal="INT", priority=100, name="postgresql service")
    ops.wait_until(f"pg_isready -q -h {plan.database_address} -p {plan.database_port}",
                   f"PostgreSQL on {plan.database_address}:{plan.database_port}",
                   name="wait: postgresql ready")
    role(plan.database_user, context.secrets["database_password"], name=f"role {plan.database_user}")
    database(plan.database_name, plan.database_user, name=f"database {plan.database_name}")
