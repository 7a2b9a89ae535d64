"""lb: HAProxy spreading requests round-robin over the app servers.

The configuration passes `haproxy -c` before it replaces the live one; the
role then waits until HAProxy's own health checks see every server UP, so the
deployment ends only when the service really is balanced.
"""

from quizstack.deploy import ops, render
from quizstack.deploy.roles import Phase, install_probe

CONFIG = "/etc/haproxy/haproxy.cfg"


def phases(plan, context):
    return [Phase("loadbalancer", "haproxy", (plan.lb_host,), add_ops, needs=("web: gunicorn",))]


def add_ops(plan, context):
    up = install_probe("backends_up")
    cfg = ops.config_file(CONFIG, render.haproxy_cfg(plan),
                          check=["haproxy", "-c", "-q", "-f", "{}"], name="haproxy.cfg")
    # /run starts empty at boot: the stats socket's directory is made at each start.
    ops.service("haproxy", "/bin/sh -c 'mkdir -p /run/haproxy && "
                f"exec /usr/sbin/haproxy -W -db -f {CONFIG}'", unit="haproxy",
                restart=(cfg,), priority=300, name="haproxy service")
    ops.wait_until(f"{up} /run/haproxy/admin.sock quiz_servers {len(plan.backends)}",
                   f"all {len(plan.backends)} servers UP in HAProxy", name="wait: backends up")
