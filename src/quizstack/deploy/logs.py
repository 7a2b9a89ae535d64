"""logs: every host's logs on the logs host, through rsyslog.

The logs host runs rsyslog as the collector (RELP on its management
address, a file per host and program, one merged file) and a rotator of
those files by size. Every other host on the management network runs
rsyslog reading its programs' logs and forwarding them through a
disk-assisted queue that never gives up, so the collector may die or be cut
off without a line being lost (render_logs says why RELP). The firewalls
also run our NFLOG reader (probes/nflog.py), which turns the drops their
ruleset logs into lines of the host's log.

A scenario without a logs host (pfinal) gets no phase at all.
"""

from pyinfra import host

from quizstack.deploy import ops
from quizstack.deploy import render_logs as rl
from quizstack.deploy.roles import Phase, install_probe, scenario_host
from quizstack.deploy.web import reload_units

RSYSLOGD = f"/usr/sbin/rsyslogd -n -f {rl.CONF} -i {rl.PIDFILE}"
CHECK = ["/usr/sbin/rsyslogd", "-N1", "-f", "{}"]


def phases(plan, context):
    m = plan.management
    if not m or not m.logs:
        return []
    return [
        Phase("logs", "collector", (m.logs,), add_collector_ops),
        # The forwarders queue what they read while the collector is away; the
        # collector simply comes first, so the first lines go straight through.
        Phase("logs", "forward", rl.forwarding_hosts(plan), add_forward_ops,
              needs=("logs: collector",)),
    ]


def _systemd():
    return host.get_fact(ops.InitSystem) == "systemd"


def _rsyslog(conf):
    ops.directory(rl.SPOOL, mode="700", name="rsyslog's spool (positions, queue)")
    restart = (conf,)
    if _systemd():
        # Debian's unit runs rsyslogd without a pid file (-iNONE); ours is
        # where the rotator and the readiness wait look, as on lab hosts.
        dropin = ops.config_file("/etc/systemd/system/rsyslog.service.d/quizstack.conf",
                                 f"{rl.HEADER}[Service]\nExecStart=\nExecStart={RSYSLOGD}\n",
                                 name="rsyslog unit: our command line")
        reload_units(dropin, name="systemd daemon-reload")
        restart += (dropin,)
    ops.service("rsyslog", RSYSLOGD, unit="rsyslog", restart=restart, priority=50,
                name="rsyslog service")


def _program(name, command, description, restart=()):
    """One of our own programs, kept running (a unit of its own on real hosts)."""
    if _systemd():
        unit = ops.config_file(f"/etc/systemd/system/{name}.service",
                               rl.systemd_unit(description, command, name=name), name=f"{name} unit")
        reload_units(unit, name="systemd daemon-reload")
        restart = tuple(restart) + (unit,)
    ops.service(name, command, unit=name, restart=restart, priority=60, name=f"{name} service")


def add_collector_ops(plan, context):
    address = rl.logs_address(plan)
    ops.directory(rl.STORE, mode="750", name="the logs' folder")
    conf = ops.config_file(rl.CONF, rl.collector_conf(plan), check=CHECK, name="rsyslog.conf (collector)")
    _rsyslog(conf)
    install_probe("logs_rotate")
    _program("quizstack-logs-rotate", rl.rotate_command(), "quizstack: rotation of the central logs")
    ops.wait_until(f"ss -Hltn 'src {address} and sport = :{rl.RELP_PORT}' | grep -q LISTEN",
                   f"the collector listening on {address}:{rl.RELP_PORT}", timeout=30,
                   name="wait: collector listening")


def add_forward_ops(plan, context):
    me = scenario_host()
    conf = ops.config_file(rl.CONF, rl.forwarder_conf(plan, me, journal=_systemd()), check=CHECK,
                           name="rsyslog.conf (forwarder)")
    _rsyslog(conf)
    if me in plan.fw_hosts:
        install_probe("nflog")
        _program("quizstack-nflog", rl.nflog_command(),
                 "quizstack: the firewall's drops, from NFLOG to the log")
        ops.wait_until(f"awk '$1 == {rl.NFLOG_GROUP}' /proc/net/netfilter/nfnetlink_log | grep -q .",
                       f"the drop reader bound to NFLOG group {rl.NFLOG_GROUP}", timeout=20,
                       name="wait: drop reader bound")
    # Running is enough: what it reads waits in its queue until the collector
    # takes it (a quiet host reconnects with its next line, at the latest its mark).
    ops.wait_until(f"kill -0 \"$(cat {rl.PIDFILE} 2>/dev/null)\"", "rsyslog running", timeout=30,
                   name="wait: rsyslog running")
