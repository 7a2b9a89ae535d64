"""fw: nftables, default drop; clients reach only the load balancer's service.

The ruleset passes `nft -c` before it is loaded. On lab hosts it is loaded by a
one-shot program of the host's init, so a host that is stopped and started
comes back with its firewall; on real hosts Debian's nftables unit does the
same from the same standard file, /etc/nftables.conf.
"""

from quizstack.deploy import ops, render
from quizstack.deploy.roles import Phase

CONFIG = "/etc/nftables.conf"


def phases(plan, context):
    # Last: the service stays closed to clients until it is complete.
    return [Phase("firewall", "nftables", (plan.fw_host,), add_ops,
                  needs=("loadbalancer: haproxy",))]


def add_ops(plan, context):
    conf = ops.config_file(CONFIG, render.nftables_conf(plan), mode="755",
                           check=["nft", "-c", "-f", "{}"], name="nftables.conf")
    ops.service("nftables", f"/usr/sbin/nft -f {CONFIG}", unit="nftables", oneshot=True,
                restart=(conf,), priority=50, name="nftables ruleset")
    ops.wait_until("nft list table inet quizstack", "the quizstack ruleset loaded",
                   name="wait: ruleset loaded")
