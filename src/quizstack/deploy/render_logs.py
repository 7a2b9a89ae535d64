"""The central logs' files, as pure functions of the plan.

Every host on the management network runs rsyslog. On the `logs` host it is
the collector: RELP on its management address, one file per host and
program, and one merged file of every line with a high-precision UTC
timestamp first. On every other host it reads what the host's programs write
and forwards it over RELP through a disk-assisted queue, so that while the
collector is down nothing is lost: the queue fills (memory, then disk) and
drains when the collector answers again.

Why RELP rather than plain TCP (omfwd): a TCP sender counts a line as sent
once the kernel took it. When the collector dies without a word (a power
cut), what sat in the socket's buffers — and what the collector had
received but not written — is gone, and the sender never knows. RELP
acknowledges each line once the collector wrote it (its ruleset has a direct
queue: the write happens before the acknowledgement), and the sender resends
what was not acknowledged. A line may then arrive twice; none is lost.

Where the lines come from, on a lab host (supervisord as init): every
program's output, /var/log/supervisor/<program>.log (HAProxy's HTTP log,
QUIZ's request log and errors with gunicorn's, Patroni with PostgreSQL's
own log, etcd, sshd `-e`, keepalived `--log-console`, the firewall's drops
read by our NFLOG reader, NRPE...), GlusterFS's files (/var/log/glusterfs,
the bricks' under bricks/) and Nagios's own log. Nothing in a lab needs
/dev/log: the hosts share the machine's /dev, so a socket there would be one
for all of them. Real hosts (systemd) also get imuxsock, where journald
forwards what the units print. No kernel log (imklog): a host in a network
namespace cannot read its own.
"""

from quizstack.deploy.render import DROP_PREFIX, HEADER, NFLOG_GROUP  # noqa: F401 (re-exported)

RELP_PORT = 2514                       # RELP's usual port
CONF = "/etc/rsyslog.conf"
PIDFILE = "/run/rsyslogd.pid"
SPOOL = "/var/spool/rsyslog"           # imfile's positions and the forward queue's disk part
STORE = "/var/log/quizstack"           # on the logs host
MERGED = f"{STORE}/all.log"
HOSTS_DIR = f"{STORE}/hosts"
QUEUE_DISK = "1g"                      # a forwarder's queue on disk at most (hours of this lab's lines)
MARK_INTERVAL = 30                     # every rsyslog says "-- MARK --" this often: a quiet host is seen alive
ROTATE_BYTES = 32 * 1024 * 1024        # a file on the logs host is rotated past this size
ROTATE_KEEP = 4                        # rotated copies kept (.1 … .4)
ROTATE_EVERY = 30                      # seconds between the rotator's looks

# The files every host's programs write, read with imfile: (glob, source).
# The program name is the file's name without .log; a source other than
# "supervisor" prefixes it ("glusterfs-glusterd", "glusterfs-brick-…").
FILES = (
    ("/var/log/supervisor/*.log", "supervisor"),
    ("/var/log/glusterfs/*.log", "glusterfs"),
    ("/var/log/glusterfs/bricks/*.log", "glusterfs-brick"),
    ("/var/log/nagios4/nagios.log", "nagios"),
)
# rsyslog's own output file is not read back: its messages come through its
# own internal stream, and reading it would echo every complaint.
SKIPPED = ("rsyslog",)

MERGED_TEMPLATE = ('template(name="quizstack_merged" type="string" '
                   'string="%timereported:::date-rfc3339,date-utc% %hostname% %$.prog% '
                   '%msg:::drop-last-lf%\\n")\n')


def logs_address(plan):
    m = plan.management
    return m.address(m.logs)


def forwarding_hosts(plan):
    """Every host that sends its logs to the logs host: all on the management network but it."""
    m = plan.management
    if not m or not m.logs:
        return ()
    return tuple(h for h in m.addresses if h != m.logs)


def _inputs(ruleset):
    lines = []
    for glob, source in FILES:
        lines.append(f'input(type="imfile" file="{glob}" tag="{source}" addMetadata="on" '
                     f'reopenOnTruncate="on" freshStartTail="off" ruleset="{ruleset}")\n')
    return "".join(lines)


def _naming(then):
    """The ruleset that names a file's lines after their program, then `then`."""
    skipped = " or ".join(f'$.prog == "{name}"' for name in SKIPPED)
    return (
        'ruleset(name="quizstack_files") {\n'
        "    set $.stem = re_extract($!metadata!filename, '([^/]+)[.]log$', 0, 1, \"file\");\n"
        '    if $programname == "supervisor" then {\n'
        '        set $.prog = $.stem;\n'
        '    } else if $programname == "nagios" then {\n'
        '        set $.prog = "nagios";\n'
        '    } else {\n'
        '        set $.prog = $programname & "-" & $.stem;\n'
        '    }\n'
        # PostgreSQL writes its log to Patroni's output: its lines carry
        # "postgres:" (log_line_prefix, render.patroni_yml) and are named so.
        '    if $.prog == "patroni" and '
        "re_match($msg, '^[-0-9]+ [0-9:.]+ [A-Z]+ [[][0-9]+[]] postgres: ') then {\n"
        '        set $.prog = "postgresql";\n'
        '    }\n'
        f'    if {skipped} then stop\n'
        f'    call {then}\n'
        '}\n'
    )


def _common(host, modules):
    return HEADER + (
        f'global(workDirectory="{SPOOL}" localHostname="{host}" maxMessageSize="64k"\n'
        '       parser.escapeControlCharactersOnReceive="on")\n'
        # Lines are never thrown away for coming fast: a burst of requests is
        # what the logs are for (rsyslog's own rate limits apply to imuxsock only).
        'module(load="imfile" mode="inotify")\n'
        # Marks go through rsyslog's own queue (not syslog(3): there is no /dev/log).
        f'module(load="immark" interval="{MARK_INTERVAL}" use.syslogCall="off")\n'
        f"{modules}"
    )


def forwarder_conf(plan, host, journal=False):
    """rsyslog on a host that forwards everything to the logs host.

    `journal`: a real host under systemd, whose units' output reaches
    rsyslog through journald's syslog socket (imuxsock).
    """
    modules = 'module(load="omrelp")\n'
    if journal:
        modules += 'module(load="imuxsock" SysSock.RateLimit.Interval="0")\n'
    return (
        _common(host, modules) + "\n" +
        # The program name travels as RFC 5424's APP-NAME, with the time of
        # the line to the microsecond and its offset.
        'template(name="quizstack_forward" type="string" '
        'string="<%PRI%>1 %timereported:::date-rfc3339% %hostname% %$.prog% - - - '
        '%$.msg:::drop-last-lf%")\n'
        "\n"
        'ruleset(name="quizstack_forward") {\n'
        # A syslog line ("tag: text", as from the journal) keeps the space after
        # the colon in its text; a line read from a file has none.
        '    set $.msg = ltrim($msg);\n'
        f'    action(type="omrelp" name="to_logs" target="{logs_address(plan)}" port="{RELP_PORT}"\n'
        '           template="quizstack_forward" timeout="5" conn.timeout="2"\n'
        # Disk-assisted: memory first, spilling to disk when the collector is
        # away for long; kept across a restart of this rsyslog; never given up.
        '           queue.type="LinkedList" queue.filename="to_logs" queue.size="50000"\n'
        f'           queue.maxDiskSpace="{QUEUE_DISK}" queue.saveOnShutdown="on"\n'
        '           queue.dequeueBatchSize="512"\n'
        '           action.resumeRetryCount="-1" action.resumeInterval="1"\n'
        '           action.writeAllMarkMessages="on")\n'
        '}\n'
        "\n"
        f"{_naming('quizstack_forward')}"
        "\n"
        # rsyslog's own messages (and, on real hosts, the journal's).
        'set $.prog = $app-name;\n'
        'call quizstack_forward\n'
        "\n"
        f"{_inputs('quizstack_files')}"
    )


def collector_conf(plan):
    """rsyslog on the logs host: RELP in, a file per host and program, one merged file."""
    m = plan.management
    return (
        _common(m.logs, 'module(load="imrelp")\n') + "\n" +
        f'template(name="quizstack_per_program" type="string" '
        f'string="{HOSTS_DIR}/%hostname:::secpath-replace%/%$.prog:::secpath-replace%.log")\n'
        'template(name="quizstack_line" type="string" '
        'string="%timereported:::date-rfc3339,date-utc% %msg:::drop-last-lf%\\n")\n'
        f"{MERGED_TEMPLATE}"
        "\n"
        # Direct: each line is written before RELP acknowledges it.
        'ruleset(name="quizstack_store" queue.type="Direct") {\n'
        '    if $.prog == "" then set $.prog = $app-name;\n'
        '    action(type="omfile" dynaFile="quizstack_per_program" template="quizstack_line"\n'
        '           dynaFileCacheSize="200" dirCreateMode="0750" fileCreateMode="0640"\n'
        '           action.writeAllMarkMessages="on")\n'
        f'    action(type="omfile" file="{MERGED}" template="quizstack_merged"\n'
        '           dirCreateMode="0750" fileCreateMode="0640" action.writeAllMarkMessages="on")\n'
        '}\n'
        "\n"
        f"{_naming('quizstack_store')}"
        "\n"
        f'input(type="imrelp" address="{logs_address(plan)}" port="{RELP_PORT}" '
        'ruleset="quizstack_store" maxDataSize="64k")\n'
        f"{_inputs('quizstack_files')}"
        "\n"
        'set $.prog = $app-name;\n'
        'call quizstack_store\n'
    )


def rotate_command(pidfile=PIDFILE):
    """The rotator's command line (probes/logs_rotate.py)."""
    from quizstack.deploy.roles import PROBE_DIR

    return (f"/usr/bin/python3 {PROBE_DIR}/logs_rotate.py --dir {STORE} --max-bytes {ROTATE_BYTES} "
            f"--keep {ROTATE_KEEP} --every {ROTATE_EVERY} --pidfile {pidfile}")


def systemd_unit(description, command, after="network-online.target", name=None):
    """A long-running program of ours as a systemd unit, for real Debian hosts.

    Its output goes to the journal under `name` (the program's name in the
    central logs, as supervisord's log file names it on lab hosts)."""
    return HEADER + (
        "[Unit]\n"
        f"Description={description}\n"
        f"After={after}\n"
        "\n"
        "[Service]\n"
        f"ExecStart={command}\n"
        + (f"SyslogIdentifier={name}\n" if name else "") +
        "Restart=always\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def nflog_command():
    """The firewall's drop reader (probes/nflog.py): NFLOG group → one line per drop on stdout."""
    from quizstack.deploy.roles import PROBE_DIR

    return f"/usr/bin/python3 -u {PROBE_DIR}/nflog.py --group {NFLOG_GROUP}"
