"""guard: the database, consensus and storage hosts admit only their own users.

The app servers share the back-end network with these hosts, and the
firewall in front sees none of that traffic: each of these hosts therefore
loads a table of its own (`inet quizstack_guard`, render_guard says what it
admits from whom), default drop on input. The file passes `nft -c` before it
is put in place, as the firewall's does; it is loaded by a one-shot program
of the host's init (supervisord in the lab, our own systemd unit on real
hosts), so a host that is killed and booted again comes back guarded.

On the first storage node the phase also sets the volume's `auth.allow`
(storage.add_auth_ops): the storage role sets it when it makes the
volume, this keeps it following the app servers.

Order: as soon as the database and the volume are up, before the app
servers start using them: from then on every wait of the deployment that
crosses the back end (the routers finding the primary, the mounts, the
first migration, the checks) passes through the guard. What is open when it
first loads carries on (render_guard says how). It comes before the access
role, which must end the deployment: a first deployment of real hosts
(`deploy --direct`) reaches them over SSH from the operators' machine until
that role hands them to ges (render_guard admits that SSH). A scale adds or
removes app servers, whom the guard names one by one: deploy.restrict keeps
this role's phase on all its hosts and runs it first, before a new server
mounts the volume or routes to the database.
"""

from pyinfra import host
from pyinfra.api import operation

from quizstack.deploy import ops, storage
from quizstack.deploy import render_guard as rg
from quizstack.deploy.roles import Phase, scenario_host

ROLE = "guard"
KEY = f"{ROLE}: nftables"
# Succeeds when the guard's table is loaded.
LOADED = f"/usr/sbin/nft list table inet {rg.TABLE}"


def phases(plan, context):
    hosts = rg.guarded_hosts(plan)
    if not hosts:
        return []
    # Once the back end's services are up (see the module's docstring).
    needs = ("database: postgresql",) + (("storage: volume",) if plan.storage_hosts else ())
    return [Phase(ROLE, "nftables", hosts, add_ops, needs=needs)]


@operation()
def _daemon_reload(unit_file):
    if unit_file.did_change():
        yield "systemctl daemon-reload"


def add_ops(plan, context):
    me = scenario_host()
    conf = ops.config_file(rg.CONF, rg.guard_nft(plan, me), mode="600",
                           check=["nft", "-c", "-f", "{}"], name="guard ruleset")
    if host.get_fact(ops.InitSystem) == "systemd":
        unit = ops.config_file(rg.UNIT_FILE, rg.guard_systemd_unit(), name="guard unit")
        _daemon_reload(unit, name="systemd daemon-reload")
        # A new ruleset is loaded by the unit's reload: one nft transaction,
        # where a restart would first delete the table.
        ops.service(rg.UNIT, f"/usr/sbin/nft -f {rg.CONF}", unit=rg.UNIT, oneshot=True,
                    restart=(unit,), reload=(conf,), name="guard loaded")
    else:
        # Each start of the one-shot program is one `nft -f`: the file
        # replaces the table in one transaction (render_guard.guard_nft).
        ops.service(rg.UNIT, f"/usr/sbin/nft -f {rg.CONF}", oneshot=True, restart=(conf,),
                    priority=40, name="guard loaded")
    loaded(name="guard table present")
    if plan.storage_hosts and me == plan.storage_hosts[0][0]:
        # The volume's own list of clients: set by the storage role when it
        # makes the volume, again here so that a scale lets a new server in
        # before it mounts.
        storage.add_auth_ops(plan)


@operation()
def loaded():
    """Load the file when the table is missing (flushed by hand, say): the
    one-shot program above runs only when the file changed."""
    if not host.get_fact(ops.Succeeds, command=LOADED):
        yield f"/usr/sbin/nft -f {rg.CONF}"
