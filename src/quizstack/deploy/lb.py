"""lb: HAProxy spreading requests round-robin over the app servers.

The configuration passes `haproxy -c` before it replaces the live one; the
role then waits until HAProxy's own health checks see every server UP, so the
deployment ends only when the service really is balanced. A pair of load
balancers (lb1, lb2) runs the same configuration on both; keepalived floats
the service address and the servers' gateway to whichever holds them, and
moves them when that member's HAProxy stops answering (see vrrp.py). The
pair's members also load a small nftables table of their own that takes
VRRP only on their link from the other member: the election cannot be
authenticated, and ges and nagios, whom the clients reach, share LAN2 with
the balancers. Like the firewall's ruleset it passes `nft -c` first and is
loaded by the host's init at every start (Debian's nftables unit on real
hosts, from the same standard file).
"""

from quiz.unavailable import haproxy_errorfile
from quizstack.deploy import ops, render, vrrp
from quizstack.deploy.roles import Phase, install_probe, scenario_host

CONFIG = "/etc/haproxy/haproxy.cfg"
STATS_SOCKET = "/run/haproxy/admin.sock"
# The balancers have no other ruleset: the pair's filter is the standard file.
PAIR_FILTER = "/etc/nftables.conf"
PAIR_FILTER_LOADED = f"/usr/sbin/nft list table inet {render.PAIR_TABLE}"
# keepalived's test that this member serves: HAProxy answers on its socket.
SERVING = f"/usr/bin/nc -U -z {STATS_SOCKET}"


def phases(plan, context):
    found = [Phase("loadbalancer", "haproxy", plan.lb_hosts, add_ops, needs=("web: gunicorn",))]
    if plan.pair_of(plan.lb_hosts[0]):
        found.append(Phase("loadbalancer", "keepalived", plan.lb_hosts, add_pair_ops,
                           needs=("loadbalancer: haproxy",)))
    return found


def add_ops(plan, context):
    up = install_probe("backends_up")
    if plan.pair_of(scenario_host()):
        # The backup binds the floating service address before it holds it.
        vrrp.add_sysctl_ops({"net.ipv4.ip_nonlocal_bind": 1})
    # QUIZ's own page for "no server can answer" (the app ships it; HAProxy
    # serves it as is): written before the configuration that names it.
    page = ops.config_file(render.HAPROXY_503, haproxy_errorfile(), name="haproxy 503 page")
    cfg = ops.config_file(CONFIG, render.haproxy_cfg(plan),
                          check=["haproxy", "-c", "-q", "-f", "{}"], name="haproxy.cfg")
    # /run starts empty at boot: the stats socket's directory is made at each start.
    # A new configuration (a server added or removed) is a seamless reload:
    # HAProxy's master (-W) starts new workers on SIGUSR2 and the old ones
    # finish the requests they hold; no connection is dropped.
    ops.service("haproxy", "/bin/sh -c 'mkdir -p /run/haproxy && "
                f"exec /usr/sbin/haproxy -W -db -f {CONFIG}'", unit="haproxy",
                reload=(cfg, page), reload_signal="USR2", priority=300, name="haproxy service")
    ops.wait_until(f"{up} {STATS_SOCKET} quiz_servers {len(plan.backends)}",
                   f"all {len(plan.backends)} servers UP in HAProxy", name="wait: backends up")


def add_pair_ops(plan, context):
    pair = plan.pair_of(scenario_host())
    # The filter first: keepalived never listens unguarded.
    conf = ops.config_file(PAIR_FILTER, render.pair_nftables_conf(pair), mode="755",
                           check=["nft", "-c", "-f", "{}"], name="nftables.conf (the pair's filter)")
    ops.service("nftables", f"/usr/sbin/nft -f {PAIR_FILTER}", unit="nftables", oneshot=True,
                restart=(conf,), priority=50, name="nftables: the pair's filter")
    ops.wait_until(PAIR_FILTER_LOADED, "the pair's filter loaded", name="wait: pair filter loaded")
    vrrp.add_keepalived_ops(pair, SERVING)
