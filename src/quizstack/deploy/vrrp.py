"""Pairs: two hosts of a role behind floating addresses, with keepalived (VRRP).

The load balancers and the firewalls may each be a pair (a [floating] group
in the scenario). Both members are configured alike; keepalived on each
elects one to hold the group's addresses and hands them to the other when
the holder dies, loses a link, or stops serving (its HAProxy gone, its
ruleset gone: the role's `check` command). The firewalls also run conntrackd,
so the connections established through one survive its loss. Neither VRRPv3
nor conntrackd's sync can be authenticated, so the members talk unicast on
their own link (a [floating] group's `link`), and each member's nftables
takes those protocols from the other member there only.
"""

from quizstack.deploy import ops, render
from quizstack.deploy.roles import install_probe, scenario_host

KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
NOTIFY = "/etc/keepalived/quizstack-notify.sh"
SYSCTL_CONF = "/etc/sysctl.d/60-quizstack.conf"
# A backup that has heard a master for this long has certainly found it:
# with no master it would have taken over after about 0.7 s of silence.
SETTLED_AFTER = 1.5


def add_keepalived_ops(pair, check, conntrackd=False):
    host = scenario_host()
    settled = install_probe("vrrp_settled")
    notify = ops.config_file(NOTIFY, render.vrrp_notify(pair, conntrackd), mode="755",
                             check=["sh", "-n", "{}"], name="keepalived notify script")
    conf = ops.config_file(KEEPALIVED_CONF, render.keepalived_conf(pair, host, check, NOTIFY),
                           check=["keepalived", "--config-test", "--use-file", "{}"],
                           name="keepalived.conf")
    ops.service("keepalived", "/usr/sbin/keepalived --dont-fork --log-console --vrrp "
                f"--use-file {KEEPALIVED_CONF}", unit="keepalived",
                restart=(conf, notify), priority=400, name="keepalived service")
    state = render.VRRP_STATE.format(name=pair.name)
    ops.wait_until(f"{settled} {state} {SETTLED_AFTER}",
                   f"VRRP instance {pair.name} to elect a master", timeout=30,
                   name="wait: VRRP settled")


def add_conntrackd_ops(pair):
    conf = ops.config_file(render.CONNTRACKD_CONF, render.conntrackd_conf(pair, scenario_host()),
                           name="conntrackd.conf")
    ops.service("conntrackd", f"/usr/sbin/conntrackd -C {render.CONNTRACKD_CONF}",
                unit="conntrackd", restart=(conf,), priority=350, name="conntrackd service")
    ops.wait_until(f"conntrackd -C {render.CONNTRACKD_CONF} -s runtime",
                   "conntrackd to answer", name="wait: conntrackd ready")


def add_sysctl_ops(settings):
    """Kernel settings: a sysctl.d file for boots, and the live values now."""
    ops.config_file(SYSCTL_CONF, render.sysctl_conf(settings), name="sysctl.d drop-in")
    for key, value in sorted(settings.items()):
        ops.sysctl(key, value, name=f"sysctl {key}")
