"""fw: nftables, default drop; clients reach only the load balancer's service.

The ruleset passes `nft -c` before it is loaded. On lab hosts it is loaded by a
one-shot program of the host's init, so a host that is stopped and started
comes back with its firewall; on real hosts Debian's nftables unit does the
same from the same standard file, /etc/nftables.conf. A pair of firewalls
(fw1, fw2) loads the same ruleset on both, shares connection state with
conntrackd, and floats the clients' gateway and the inner address with
keepalived, which hands them over when the holder dies or its ruleset is gone.
Both talk on the pair's own link, where the ruleset takes them from the
other member only (render._pair_rules): neither can be authenticated.
"""

from quizstack.deploy import ops, render, vrrp
from quizstack.deploy.roles import Phase, scenario_host

CONFIG = "/etc/nftables.conf"
# keepalived's test that this member serves: its ruleset is loaded.
SERVING = "/usr/sbin/nft list table inet quizstack"


def phases(plan, context):
    # Last: the service stays closed to clients until it is complete.
    found = [Phase("firewall", "nftables", plan.fw_hosts, add_ops,
                   needs=("loadbalancer: haproxy",))]
    if plan.pair_of(plan.fw_hosts[0]):
        found.append(Phase("firewall", "keepalived", plan.fw_hosts, add_pair_ops,
                           needs=("firewall: nftables",)))
    return found


def add_ops(plan, context):
    conf = ops.config_file(CONFIG, render.nftables_conf(plan), mode="755",
                           check=["nft", "-c", "-f", "{}"], name="nftables.conf")
    ops.service("nftables", f"/usr/sbin/nft -f {CONFIG}", unit="nftables", oneshot=True,
                restart=(conf,), priority=50, name="nftables ruleset")
    ops.wait_until(SERVING, "the quizstack ruleset loaded", name="wait: ruleset loaded")


def add_pair_ops(plan, context):
    pair = plan.pair_of(scenario_host())
    vrrp.add_conntrackd_ops(pair)
    vrrp.add_keepalived_ops(pair, SERVING, conntrackd=True)
