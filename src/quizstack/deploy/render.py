"""Every configuration file the deployment writes, as pure functions of the plan.

Nothing here touches a host: each function returns the text of one file, so
the files are tested against expected output in tests/unit, and the roles
only decide where a text goes and which checker (`haproxy -c`, `nft -c`, ...)
must accept it before it goes live.
"""

import re

HEADER = "# Written by quizstack from the scenario; changes here are overwritten.\n"
CONNTRACKD_PORT = 3780
NRPE_PORT = 5666
HAPROXY_503 = "/etc/haproxy/errors/quiz-503.http"
HAPROXY_BUFFER = 131072
REPLAYABLE_BODY = 120000      # bytes of a request body HAProxy can keep whole to replay it
AGENT_PORT = 8009             # the load agent on every app server (balance = "load")
SLOWSTART = "10s"             # a server back or new ramps up to its full weight in this time
# The largest request body the service takes: QUIZ's 2 MB image limit and the
# form around it. HAProxy refuses a longer one before any server sees it, the
# app (QUIZ_MAX_BODY) a chunked one as it passes the limit.
MAX_BODY = 2 * 1024 * 1024 + 512 * 1024
# Failed logins (POST /session not answered with a redirect) one client address
# may have in LOGIN_WINDOW before the balancer answers 429 to its logins (refused
# tries count too, so a flood stays refused; a successful login never counts).
LOGIN_TRIES = 10
LOGIN_WINDOW = 10


def postgresql_conf(plan):
    """A conf.d drop-in: listen only where the app servers reach the database."""
    return HEADER + (
        f"listen_addresses = '{plan.database_address}'\n"
        f"port = {plan.database_port}\n"
        "password_encryption = 'scram-sha-256'\n"
        # Three servers with a few persistent connections each, plus checks.
        "max_connections = 100\n"
        # A hung app server's open transaction releases its locks within seconds.
        "idle_in_transaction_session_timeout = '5s'\n"
    )


def pg_hba_conf(plan):
    """Local administration by peer; the app role only from the app servers' subnet."""
    return HEADER + (
        "# TYPE  DATABASE        USER            ADDRESS                 METHOD\n"
        "local   all             postgres                                peer\n"
        f"host    {plan.database_name:<15} {plan.database_user:<15} "
        f"{str(plan.app_subnet):<23} scram-sha-256\n"
    )


def haproxy_cfg(plan):
    """The scenario's balancing policy over every app server, health-checked on /healthz.

    The timings are what the fault drills measured (docs/reliability.md):
    - a dead server (no answer at all) costs a connect timeout of 500 ms and
      a retry on another server (`retries` with `redispatch` on every retry);
      checks twice a second mark it DOWN after two misses;
    - a hung server (its kernel still accepts connections) is found by its
      health check timing out, and a read it does not answer within 2 s is
      retried elsewhere (`retry-on response-timeout`);
    - a write is replayed only when that is safe: a creation whose form
      carried a one-time token (`?once=`, the app answers a replay as it
      answered the first) and whose body fits in HAProxy's buffer, like a
      read after 2 s; any other write is retried only when its connection
      failed, so it never reached a server, and may wait up to 10 s, longer
      than the storage's worst stall (a quiz created twice is worse than an
      error).
    In a pair of balancers the backup binds the floating service address
    before it arrives (the role allows non-local binds). The response header
    X-Server names the server that answered, which the round-robin check counts.
    The policy (`[service] balance`): _algorithm and _server_options.
    """
    servers = "".join(
        f"    server {b.name} {b.address}:{plan.app_port} check\n" for b in plan.backends
    )
    return HEADER + (
        "global\n"
        "    log stdout format raw local0\n"
        # The master stays root to reload; the workers that face the clients
        # run as haproxy, shut in an empty directory.
        "    user haproxy\n"
        "    group haproxy\n"
        "    chroot /var/lib/haproxy\n"
        "    stats socket /run/haproxy/admin.sock mode 660 level admin\n"
        "    stats timeout 30s\n"
        "    maxconn 4096\n"
        # Room for a form with a small image, so it can be replayed (see below).
        f"    tune.bufsize {HAPROXY_BUFFER}\n"
        "\n"
        "defaults\n"
        "    mode http\n"
        "    option http-buffer-request\n"
        "    log global\n"
        "    option httplog\n"
        "    option dontlognull\n"
        "    timeout connect 500ms\n"
        # A health check answered within a second is a live server: under a
        # database failover a busy server answers in some hundreds of ms.
        "    timeout check 1s\n"
        "    timeout client 30s\n"
        "    timeout server 10s\n"
        "    timeout http-request 10s\n"
        "    retries 3\n"
        "    option redispatch 1\n"
        "    retry-on conn-failure empty-response response-timeout 502 503 504\n"
        # When no server can answer, QUIZ's own "back in a moment" page.
        f"    errorfile 503 {HAPROXY_503}\n"
        "\n"
        "frontend quiz\n"
        f"    bind {plan.lb_address}:{plan.port}\n"
        "    option forwardfor\n"
        "    http-request set-header X-Forwarded-Proto http\n"
        f"{_request_id(plan)}"
        f"{_guards(plan)}"
        f"{_watch_rule(plan)}"
        "    default_backend quiz_servers\n"
        "\n"
        "backend quiz_servers\n"
        f"    balance {_algorithm(plan)}\n"
        "    option httpchk GET /healthz\n"
        "    http-check expect status 200\n"
        # A creation whose form carried a one-time token (?once=...) is safe to
        # replay: the app answers a replay as it answered the first. Its body
        # must fit in the buffer to be replayed (tune.bufsize).
        "    acl replayable urlp(once) -m found\n"
        f"    acl small req.hdr_val(content-length) lt {REPLAYABLE_BODY}\n"
        "    http-request set-timeout server 2s if METH_GET || replayable small\n"
        "    http-request disable-l7-retry unless METH_GET || replayable small\n"
        "    default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 2"
        f"{_server_options(plan)}\n"
        "    http-response set-header X-Server %s\n"
        f"{servers}"
        f"{_watch_backend(plan)}"
    )


def _algorithm(plan):
    """HAProxy's algorithm for the policy.

    - roundrobin: each server in turn, whatever it is doing (the seed's
      requirement; `check` counts 10/10/10);
    - leastconn: the server with the fewest requests in flight, so a server
      that slows down keeps its requests longer and gets fewer new ones;
    - load: leastconn too, weighted by the agent on each server (_server_options).
      Leastconn rather than a weighted round-robin: it reacts within one
      request to a server that slows, where the agent's weight follows
      within a second or two; HAProxy's leastconn divides the requests in
      flight by the weight, so the two add up.
    """
    return "roundrobin" if plan.balance == "roundrobin" else "leastconn"


def _server_options(plan):
    """What every server of quiz_servers gets besides its health check.

    A server that comes back or joins ramps up to its weight over SLOWSTART
    (cold workers, empty caches) with leastconn and load; not with
    roundrobin, whose exact rotation the check counts right after a server
    returns. With load, every server's agent (probes/agent.py) is asked each
    second on AGENT_PORT for its state and weight; `weight 100` makes the
    agent's percentages HAProxy's weights (the default weight, 1, would round
    any percentage below 100 to nothing).
    """
    if plan.balance == "roundrobin":
        return ""
    options = f" slowstart {SLOWSTART}"
    if plan.balance == "load":
        options += f" weight 100 agent-check agent-port {AGENT_PORT} agent-inter 1s"
    return options


def _request_id(plan):
    """Every request gets an id, sent to the server and returned to the client
    as X-Request-ID, and written in the balancer's log line (`id=`); QUIZ
    writes it in every line of that request (quiz.requestlog).

    A client's own X-Request-ID is replaced: clients are not trusted to name
    requests (one could make its requests look like another's in the logs).
    Only nagios may bring one (a well-formed id of 8 to 64 letters, digits,
    `.`, `_`, `:` or `-`), so a probe can be followed under its own name.
    """
    m = plan.management
    trusted = ""
    if m and m.nagios:
        trusted = ("    http-request set-var(txn.request_id) req.hdr(X-Request-ID) "
                   f"if {{ src {m.nagios_address} }} "
                   "{ req.hdr(X-Request-ID) -m reg ^[A-Za-z0-9._:-]{8,64}$ }\n")
    return (
        trusted +
        "    http-request set-var(txn.request_id) uuid() unless { var(txn.request_id) -m found }\n"
        "    unique-id-format %[var(txn.request_id)]\n"
        "    http-request set-header X-Request-ID %[unique-id]\n"
        "    http-response set-header X-Request-ID %[unique-id]\n"
        # The request line as logged: an API token in the query never reaches a log.
        "    http-request set-var(txn.logged_uri) url,regsub(token=[^&]*,token=<redacted>,g)\n"
        # HAProxy's HTTP log format (option httplog) with the id at the end.
        '    log-format "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc '
        '%ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs \\"%HM %[var(txn.logged_uri)] %HV\\" id=%ID"\n'
    )


def _guards(plan):
    """What the balancer refuses before any server sees it.

    - A body longer than MAX_BODY (by its Content-Length): 413 at once, so a
      100 MB upload never reaches a server's disk (a chunked body has no
      length; the app cuts it as it passes the same limit).
    - More than LOGIN_TRIES failed logins (POST /session answered with
      anything but a redirect) from one address in LOGIN_WINDOW seconds:
      429 with Retry-After to its logins, counted per client address in a
      stick table on each balancer (gpc0: incremented by the answer). The
      refused tries count too, so a flood stays refused until it stops; a
      successful login never counts, so many users behind one address (an
      office, the chaos load's workers) log in freely, and an honest user who
      mistypes a few times never meets it. QUIZ's own per-account back-off
      stops a slow guesser.
    A slow client (headers or body trickled in) is cut by `timeout http-request`.
    """
    return (
        f"    http-request deny deny_status 413 if {{ req.hdr_val(content-length) gt {MAX_BODY} }}\n"
        f"    stick-table type ip size 100k expire {LOGIN_WINDOW * 3}s "
        f"store gpc0,gpc0_rate({LOGIN_WINDOW}s)\n"
        "    acl login_try method POST\n"
        "    acl login_path path /session\n"
        "    http-request track-sc0 src if login_try login_path\n"
        f"    acl login_flood sc_gpc0_rate(0) gt {LOGIN_TRIES}\n"
        "    http-request sc-inc-gpc0(0) if login_try login_path login_flood\n"
        f"    http-request deny deny_status 429 hdr Retry-After {LOGIN_WINDOW} "
        "content-type text/plain string \"Too many failed logins from this address; wait a moment.\" "
        "if login_try login_path login_flood\n"
        # The answer tells a failed login (the form again, or QUIZ's own 429)
        # from a successful one (a redirect); only tracked requests are logins.
        "    http-response sc-inc-gpc0(0) if { sc0_tracked } !{ status 302:303 }\n"
    )


def _watch_rule(plan):
    m = plan.management
    if not m or not m.nagios:
        return ""
    return f"    use_backend quiz_watch if {{ src {m.nagios_address} }}\n"


def _watch_backend(plan):
    """Nagios's requests to the service get their own round-robin over the same
    servers (tracking the main backend's health checks), so a probe every 10 s
    never shifts the users' round-robin: 30 requests stay 10/10/10."""
    m = plan.management
    if not m or not m.nagios:
        return ""
    servers = "".join(f"    server {b.name} {b.address}:{plan.app_port} track quiz_servers/{b.name}\n"
                      for b in plan.backends)
    return ("\n"
            "backend quiz_watch\n"
            "    balance roundrobin\n"
            "    http-response set-header X-Server %s\n"
            f"{servers}")


def nftables_conf(plan):
    """Default drop: clients may only ping the load balancer and open its service port.

    The firewall itself accepts nothing from anyone (not even SSH); replies to
    allowed connections come back through the forward chain's conntrack rule.
    A new connection must start with a SYN, so mid-stream packets of a
    connection this firewall never saw are dropped. A pair of firewalls runs
    the same ruleset, which also accepts the VRRP adverts and conntrackd's
    updates that share the connections, on the pair's own link from the
    other member only (see _pair_rules): established connections survive
    the loss of either member.
    With a management network, the clients may also open SSH to ges and the
    web interface of nagios; the firewall itself answers SSH from ges and
    ping and NRPE from nagios, on the management network only.
    """
    outside = ", ".join(f'"{name}"' for name, _ in plan.fw_outside)
    pair = plan.pair_of(plan.fw_hosts[0])
    members = _pair_rules(pair, conntrackd=True) if pair else ""
    management = ""
    forwarded = ""
    syn_new = "tcp flags & (fin | syn | rst | ack) == syn ct state new accept\n"
    m = plan.management
    if m:
        # The firewall's own sshd and NRPE answer only ges and nagios, on MGMT.
        management = "        ct state established,related accept\n"
        if m.ges:
            management += (f"        ip saddr {m.address(m.ges)} ip daddr {m.subnet} "
                           f"tcp dport 22 {syn_new}")
        if m.nagios:
            management += (f"        ip saddr {m.address(m.nagios)} ip daddr {m.subnet} "
                           f"tcp dport {NRPE_PORT} {syn_new}"
                           f"        ip saddr {m.address(m.nagios)} ip daddr {m.subnet} "
                           "icmp type echo-request accept\n")
        if m.ges:
            forwarded += (f"        iifname {{ {outside} }} ip daddr {m.ges_address} tcp dport 22 "
                          + syn_new)
        if m.nagios:
            forwarded += (f"        iifname {{ {outside} }} ip daddr {m.nagios_address} "
                          f"tcp dport {m.nagios_port} " + syn_new)
    return (
        "#!/usr/sbin/nft -f\n" + HEADER +
        "flush ruleset\n"
        "\n"
        "table inet quizstack {\n"
        "    chain input {\n"
        "        type filter hook input priority filter; policy drop;\n"
        "        iif \"lo\" accept\n"
        f"{members}{management}"
        f"{_drop_log(plan, input_chain=True)}"
        "    }\n"
        "\n"
        "    chain forward {\n"
        "        type filter hook forward priority filter; policy drop;\n"
        "        ct state established,related accept\n"
        "        ct state invalid drop\n"
        f"        iifname {{ {outside} }} ip daddr {plan.lb_address} tcp dport {plan.port} "
        "tcp flags & (fin | syn | rst | ack) == syn ct state new accept\n"
        f"        iifname {{ {outside} }} ip daddr {plan.lb_address} icmp type echo-request accept\n"
        f"{forwarded}"
        f"{_drop_log(plan)}"
        "    }\n"
        "\n"
        "    chain output {\n"
        "        type filter hook output priority filter; policy accept;\n"
        "    }\n"
        "}\n"
    )


# Ports whose probes are logged apart from the rest: the back-end services
# (SSH, PostgreSQL, etcd, glusterd, NRPE, Patroni) — a try at one of them is
# worth every line, and a port scan's flood of other ports must not crowd it out.
SENSITIVE_PORTS = (22, 2379, 2380, 5432, 5666, 8008, 24007)
NFLOG_GROUP = 1
DROP_PREFIX = "quizstack-drop: "


def _drop_log(plan, input_chain=False):
    """What the policy is about to drop, logged to NFLOG group 1 (read by probes/nflog.py,
    docs/operations.md says why not the kernel's log) with a rate limit: a full
    port scan is millions of packets, which would bury everything else.
    Attempts at the back-end ports have their own limit, high enough for every
    one of a whole scan of every address (the checks' scans from both clients
    run beside the check that looks for one such line), still bounding a flood
    at them; the rest is sampled at 10 lines a second. Broadcast and multicast (neighbours' chatter) are not logged.
    """
    m = plan.management
    if not m or not m.logs:
        return ""
    log = f'log prefix "{DROP_PREFIX}" group {NFLOG_GROUP}'
    ports = ", ".join(map(str, SENSITIVE_PORTS))
    return (
        f"        meta pkttype host tcp dport {{ {ports} }} limit rate 200/second burst 1000 packets "
        f"{log} drop\n"
        f"        meta pkttype host limit rate 10/second burst 20 packets {log}\n"
    )


DB_ROUTER_ADDRESS = "127.0.0.1"
DB_ROUTER_CONF = "/etc/haproxy/quiz-db.cfg"
DB_ROUTER_SOCKET = "/run/quiz-db/admin.sock"
DB_READS_PORT = 5433


def database_url(plan, password):
    """Where the app servers find their database.

    A replicated database is reached through a router on each app server
    (db_router_cfg), which always points at the current primary;
    target_session_attrs makes sure of it once more for every connection.
    """
    if not plan.replicated:
        return (f"postgresql://{plan.database_user}:{password}@{plan.database_address}:"
                f"{plan.database_port}/{plan.database_name}")
    return (f"postgresql://{plan.database_user}:{password}@{DB_ROUTER_ADDRESS}:"
            f"{plan.database_port}/{plan.database_name}?target_session_attrs=read-write")


def app_environment(plan, secrets):
    """The QUIZ server's environment (secret: written with mode 0600)."""
    extra = {}
    if not plan.demo:
        # The administrator's password as Django stores it: the servers never
        # hold the password itself (secrets.django_password_hash). A teaching
        # setup keeps the seed's admin/1234 instead.
        extra["QUIZ_ADMIN_PASSWORD_HASH"] = secrets["admin_password_hash"]
    if plan.replicated:
        # Where reads go while there is no primary (the router's second port).
        extra["DATABASE_READ_URL"] = (
            f"postgresql://{plan.database_user}:{secrets['database_password']}@"
            f"{DB_ROUTER_ADDRESS}:{DB_READS_PORT}/{plan.database_name}")
    return extra | {
        "DATABASE_URL": database_url(plan, secrets["database_password"]),
        "DJANGO_SECRET_KEY": secrets["django_secret_key"],
        "DJANGO_ALLOWED_HOSTS": ",".join(allowed_hosts(plan)),
        "QUIZ_MEDIA_ROOT": plan.media_root,
        "DJANGO_SETTINGS_MODULE": "quiz.settings",
        "QUIZ_DEMO_USERS": "1" if plan.demo else "0",
        # Only the balancers' health checks hear why a server is unhealthy.
        "QUIZ_HEALTH_DETAIL_FROM": ",".join(str(a) for a in plan.lb_backend_addresses),
        "QUIZ_MAX_BODY": str(MAX_BODY),
    }


def allowed_hosts(plan):
    """The names a request may give in its Host header: the service's address, each
    server's own (the balancers' health checks), and the loopback forward's."""
    return [str(plan.lb_address), *(str(b.address) for b in plan.backends), "127.0.0.1", "localhost"]


_PLAIN = re.compile(r"[A-Za-z0-9_./:,@=?+%-]*")


def env_file(environment):
    """KEY=value lines, read by the server's wrapper (sh) and by systemd's EnvironmentFile.

    A value with any other character (a Django hash has `$`) is single-quoted,
    which both read the same way; no value the deployment writes has a quote.
    """
    def value(v):
        v = str(v)
        if _PLAIN.fullmatch(v):
            return v
        if "'" in v:
            raise ValueError("an environment value with a single quote")
        return f"'{v}'"
    return HEADER + "".join(f"{k}={value(v)}\n" for k, v in sorted(environment.items()))


def gunicorn_conf(plan, backend):
    return HEADER + (
        f"bind = '{backend.address}:{plan.app_port}'\n"
        f"workers = {plan.workers}\n"
        + (f"worker_class = 'gthread'\nthreads = {plan.threads}\n" if plan.threads > 1
           else "worker_class = 'sync'\n") +
        "user = 'www-data'\n"
        "group = 'www-data'\n"
        # QUIZ writes one line per request itself, with the request id and
        # the user (quiz.requestlog): gunicorn's own access log would double it.
        "accesslog = None\n"
        "errorlog = '-'\n"
        "timeout = 30\n"
        "graceful_timeout = 10\n"
        # Only the load balancers reach the servers, so their X-Forwarded-* are trusted.
        f"forwarded_allow_ips = '{','.join(map(str, plan.lb_backend_addresses))}'\n"
    )


def supervisor_program(name, command, *, user=None, oneshot=False,
                       stopsignal="TERM", priority=500):
    """A program section for supervisord, the init of lab hosts."""
    lines = [
        HEADER.rstrip("\n").replace("# ", "; ", 1),
        f"[program:{name}]",
        f"command={command}",
        f"priority={priority}",
        "autostart=true",
        f"stopsignal={stopsignal}",
        "stopasgroup=true",
        "killasgroup=true",
        "stdout_logfile=/var/log/supervisor/%(program_name)s.log",
        "redirect_stderr=true",
    ]
    if oneshot:
        lines += ["autorestart=false", "startsecs=0", "exitcodes=0"]
    else:
        # Generous retries: after a host starts, a program may come up before what it
        # needs (the mount before the storage nodes answer); it simply tries again.
        lines += ["autorestart=true", "startsecs=1", "startretries=30"]
    if user:
        lines.append(f"user={user}")
    return "\n".join(lines) + "\n"


# What costs our units nothing: a read-only system, a private /tmp, no new privileges.
UNIT_HARDENING = "ProtectSystem=full\nPrivateTmp=yes\nNoNewPrivileges=yes\n"


def quiz_systemd_unit(command):
    """The app server as a systemd unit, for real Debian hosts."""
    return HEADER + (
        "[Unit]\n"
        "Description=QUIZ application server (gunicorn)\n"
        # The volume first. Not RequiresMountsFor: its mount unit would try
        # once at boot, before the storage answers, and fail this unit for good;
        # quiz-volume.service tries until the volume is there.
        "After=network-online.target remote-fs.target quiz-volume.service\n"
        "Requires=quiz-volume.service\n"
        "\n"
        "[Service]\n"
        "EnvironmentFile=/etc/quiz/quiz.env\n"
        f"ExecStart={command}\n"
        # Its request lines reach the central logs as program "quiz", as on lab hosts.
        "SyslogIdentifier=quiz\n"
        "Restart=always\n"
        "RestartSec=1\n"
        # gunicorn drops to www-data itself (gunicorn.conf.py); nothing of the
        # system is written, and no privilege is gained after the start.
        + UNIT_HARDENING +
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def agent_systemd_unit(command):
    """The load agent (balance = "load") as a systemd unit, for real Debian hosts."""
    return HEADER + (
        "[Unit]\n"
        "Description=QUIZ's load agent, asked by HAProxy (agent-check)\n"
        "After=network-online.target quiz.service\n"
        "\n"
        "[Service]\n"
        "User=www-data\n"
        f"ExecStart={command}\n"
        "Restart=always\n"
        "RestartSec=1\n"
        + UNIT_HARDENING +
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def db_router_systemd_unit(command):
    """The database router as a systemd unit, for real Debian hosts."""
    return HEADER + (
        "[Unit]\n"
        "Description=QUIZ's router to the primary database (HAProxy)\n"
        "After=network-online.target\n"
        "Before=quiz.service\n"
        "\n"
        "[Service]\n"
        "RuntimeDirectory=quiz-db\n"
        f"ExecStart={command}\n"
        "Restart=always\n"
        "RestartSec=1\n"
        + UNIT_HARDENING +
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def glusterfs_client_command(plan):
    """The FUSE client in the foreground, with every storage node as a volfile server.

    Naming all of them is what backup-volfile-servers does: if the first node
    is down at mount time, the client asks the next. A client that died leaves
    a dead mount behind ("transport endpoint is not connected"); it is lazily
    unmounted first, so a restart of the program always mounts afresh.
    """
    servers = " ".join(f"--volfile-server={address}" for _, address in plan.storage_hosts)
    mount = plan.mount
    return ("/bin/sh -c '"
            f"umount -l {mount} 2>/dev/null; mkdir -p {mount} && "
            f"exec /usr/sbin/glusterfs -N {servers} --volfile-id={plan.volume} {mount}'")


def fstab_line(plan):
    """The volume in /etc/fstab, for systemd hosts: mounted by quiz-volume.service.

    `noauto`: not at boot by systemd's mount unit, which tries once; when every
    host starts at once the storage nodes may not answer yet, and neither the
    mount nor the app server that requires it would be tried again.
    """
    first, *others = [str(address) for _, address in plan.storage_hosts]
    backups = ":".join(others)
    options = "defaults,noauto,_netdev" + (f",backup-volfile-servers={backups}" if backups else "")
    return f"{first}:/{plan.volume} {plan.mount} glusterfs {options} 0 0\n"


def volume_systemd_unit(mount):
    """Mount the volume, trying again until the storage answers; the app server waits for it."""
    return HEADER + (
        "[Unit]\n"
        "Description=QUIZ's shared volume, mounted once the storage nodes answer\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "Before=quiz.service\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart=/bin/sh -c 'until mountpoint -q {mount}; do mount {mount} || sleep 2; done'\n"
        "TimeoutStartSec=infinity\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


PAIR_TABLE = "quizstack_pair"   # the balancers' table: the filter of their pair's traffic


def _pair_rules(pair, conntrackd=False, counted=False):
    """Input rules: the pair's own protocols from the other member, on its link, and no one else.

    Neither VRRPv3 nor conntrackd's sync can be authenticated: a stranger's
    advert with priority 255 would take the floating addresses, its sync
    messages would write into the connection table. What keeps them out is
    where a packet may come from: the sync network's interface (the pair's
    own link, when the scenario gives one) and a member's address there;
    anywhere else the protocols are dropped. Both members load the same
    text (the checks compare it), so it names both members' addresses, and
    `fib saddr type != local` refuses a member's own address coming in from
    the wire: what is left is exactly the peer. `counted` counts the drops
    (not in the firewalls' table, whose text must stay the same on both).
    """
    network = pair.sync_network
    names = ", ".join(f'"{n}"' for n in sorted({pair.interfaces[h][network] for h in pair.hosts}))
    members = ", ".join(str(pair.own[h][network]) for h in pair.hosts)
    peer = f"iifname {{ {names} }} ip saddr {{ {members} }} fib saddr type != local"
    drop = "counter drop" if counted else "drop"
    rules = ("        # The pair's own traffic: on its link, from the other member only.\n"
             f"        {peer} ip protocol vrrp accept\n")
    if conntrackd:
        rules += f"        {peer} udp dport {CONNTRACKD_PORT} accept\n"
    rules += f"        ip protocol vrrp {drop}\n"
    if conntrackd:
        rules += f"        udp dport {CONNTRACKD_PORT} {drop}\n"
    return rules


def pair_nftables_conf(pair):
    """A balancer pair's filter: VRRP only on its link from the other member; nothing else changed.

    The balancers forward the service and have no firewall of their own:
    this table filters nothing but VRRP (policy accept, no forward chain).
    Only this table is replaced (declared, so the delete always finds it,
    deleted and written again, in one transaction): other tables stay.
    """
    return (
        "#!/usr/sbin/nft -f\n" + HEADER +
        f"table inet {PAIR_TABLE}\n"
        f"delete table inet {PAIR_TABLE}\n"
        "\n"
        f"table inet {PAIR_TABLE} {{\n"
        "    chain input {\n"
        "        type filter hook input priority filter; policy accept;\n"
        f"{_pair_rules(pair, counted=True)}"
        "    }\n"
        "}\n"
    )


VRRP_ADVERT = 0.2   # seconds between VRRP adverts: a dead master is replaced in about 3.6 of them


def keepalived_conf(pair, host, check, notify=None):
    """VRRP for one member of a pair: the floating addresses move together.

    VRRPv3 allows adverts every 0.2 s, so a silent master is replaced in well
    under a second. Every member starts as BACKUP with `nopreempt`: the first
    listed wins the first election, and afterwards a survivor keeps the
    addresses even when a member with a higher priority comes back (no second
    interruption for the users). `check` is a command whose failure means this
    member cannot serve (its HAProxy is dead, its ruleset gone); like a link
    down it puts the instance in FAULT, which hands the addresses over at once.
    Taking the addresses sends gratuitous ARPs so the neighbours learn where
    they went.

    VRRPv3 has no authentication, so the election must be out of reach of
    everybody else: the adverts go on the sync network (the pair's own link,
    when the scenario gives one), unicast from this member's address there to
    the others', and an advert counts only from one of them
    (`check_unicast_src`) that crossed no router (`min_ttl 255`, RFC 5798's
    own rule). The floating addresses stay on the networks others reach them
    on; each names its interface.
    """
    position = pair.hosts.index(host)
    interfaces = pair.interfaces[host]
    advert_network = pair.sync_network
    peers = "".join(f"        {pair.own[peer][advert_network]} min_ttl 255\n"
                    for peer in pair.peers(host))
    addresses = "".join(f"        {cidr} dev {interfaces[network]}\n"
                        for network, cidr in pair.addresses)
    # keepalived tracks the advert interface by itself; the others are named,
    # so a member whose service side is cut (LAN2 or LAN3) gives the addresses up.
    tracked = "".join(f"        {interfaces[network]}\n" for network, _ in pair.addresses
                      if network != advert_network)
    notify_line = f"    notify {notify}\n" if notify else ""
    return HEADER + (
        "global_defs {\n"
        f"    router_id {host}\n"
        "    vrrp_version 3\n"
        "    enable_script_security\n"
        "    script_user root\n"
        "}\n"
        "\n"
        f"vrrp_script {pair.name}_serving {{\n"
        f"    script \"{check}\"\n"
        "    interval 1\n"
        "    timeout 1\n"
        "    fall 2\n"
        "    rise 2\n"
        "}\n"
        "\n"
        f"vrrp_instance {pair.name} {{\n"
        "    state BACKUP\n"
        "    nopreempt\n"
        f"    interface {interfaces[advert_network]}\n"
        f"    virtual_router_id {pair.vrid}\n"
        f"    priority {max(1, 150 - 50 * position)}\n"
        f"    advert_int {VRRP_ADVERT}\n"
        f"    unicast_src_ip {pair.own[host][advert_network]}\n"
        "    unicast_peer {\n"
        f"{peers}"
        "    }\n"
        "    check_unicast_src\n"
        "    virtual_ipaddress {\n"
        f"{addresses}"
        "    }\n"
        + ("    track_interface {\n" f"{tracked}" "    }\n" if tracked else "") +
        "    track_script {\n"
        f"        {pair.name}_serving\n"
        "    }\n"
        f"{notify_line}"
        "}\n"
    )


def conntrackd_conf(pair, host):
    """conntrackd for one firewall of a pair: connection state shared over the sync network.

    FTFW is conntrackd's reliable mode (lost messages are resent); the peer's
    connections wait in an external cache and are committed to the kernel
    when this firewall takes the addresses (see vrrp_notify). Only TCP
    through the firewall is worth sharing: the members' own traffic (VRRP,
    the sync itself) is ignored. The sync is unauthenticated UDP, so it goes
    unicast to the peer on the sync network (the pair's own link, when the
    scenario gives one) and the ruleset takes it from the peer there only.
    """
    if len(pair.hosts) != 2:
        raise ValueError(f"conntrackd shares state between two firewalls, {pair.name} has "
                         f"{len(pair.hosts)}")
    (peer,) = pair.peers(host)
    network = pair.sync_network
    own = sorted({str(a) for h in pair.hosts for a in pair.own[h].values()}
                 | {cidr.split("/")[0] for _, cidr in pair.addresses})
    ignored = "".join(f"            IPv4_address {a}\n" for a in ["127.0.0.1"] + own)
    return HEADER + (
        "Sync {\n"
        "    Mode FTFW {\n"
        # After handing the addresses over, forget what was learnt as master soon.
        "        PurgeTimeout 5\n"
        "    }\n"
        "    UDP {\n"
        f"        IPv4_address {pair.own[host][network]}\n"
        f"        IPv4_Destination_Address {pair.own[peer][network]}\n"
        f"        Port {CONNTRACKD_PORT}\n"
        f"        Interface {pair.interfaces[host][network]}\n"
        "        Checksum on\n"
        "    }\n"
        "}\n"
        "\n"
        "General {\n"
        "    HashSize 8192\n"
        "    HashLimit 65536\n"
        "    LogFile off\n"
        "    Syslog off\n"
        "    LockFile /run/conntrackd.lock\n"
        "    UNIX {\n"
        "        Path /run/conntrackd.ctl\n"
        "    }\n"
        "    NetlinkBufferSize 2097152\n"
        "    NetlinkBufferSizeMaxGrowth 8388608\n"
        "    Filter From Userspace {\n"
        "        Protocol Accept {\n"
        "            TCP\n"
        "        }\n"
        "        Address Ignore {\n"
        f"{ignored}"
        "        }\n"
        "    }\n"
        "}\n"
    )


CONNTRACKD_CONF = "/etc/conntrackd/conntrackd.conf"
VRRP_STATE = "/run/keepalived-{name}.state"


def vrrp_notify(pair, conntrackd=False):
    """The script keepalived runs on every VRRP state change of a member.

    It records the new state where status, the checks and the deployment's
    readiness wait read it. For firewalls it also moves the connection state:
    becoming master, the connections the peer shared go into this kernel's
    table, then the caches start again from the kernel and the peer is sent
    everything; becoming backup (or faulty), the kernel's own entries are
    scheduled for purging and a full copy of the master's is requested.
    """
    state = VRRP_STATE.format(name=pair.name)
    text = (
        "#!/bin/sh\n" + HEADER +
        "# keepalived calls: notify TYPE NAME STATE PRIORITY\n"
        "# keepalived does not wait for this script: two changes close together\n"
        "# (a flap) run it twice at once, and the first one's connection-state commands\n"
        "# could finish after the second had written its state (seen: MASTER\n"
        "# recorded on a member back in BACKUP). So one change at a time, in the\n"
        "# order they were started (each takes the lock as it starts).\n"
        f"exec 9> {state}.lock\n"
        "flock 9\n"
        f'echo "$3" > {state}.new.$$ && mv -f {state}.new.$$ {state}\n'
    )
    if conntrackd:
        text += (
            f"conf={CONNTRACKD_CONF}\n"
            'case "$3" in\n'
            "    MASTER)\n"
            '        conntrackd -C "$conf" -c\n'
            '        conntrackd -C "$conf" -f\n'
            '        conntrackd -C "$conf" -R\n'
            '        conntrackd -C "$conf" -B\n'
            "        ;;\n"
            "    BACKUP|FAULT)\n"
            '        conntrackd -C "$conf" -t\n'
            '        conntrackd -C "$conf" -n\n'
            "        ;;\n"
            "esac\n"
        )
    return text + "exit 0\n"


def sysctl_conf(settings):
    """A sysctl.d drop-in (applied at boot by real hosts; live by the role)."""
    return HEADER + "".join(f"{key} = {value}\n" for key, value in sorted(settings.items()))


ETCD_PEER_PORT = 2380
ETCD_CLIENT_PORT = 2379
PATRONI_API_PORT = 8008


def etcd_environment(plan, host):
    """etcd's settings as the ETCD_* variables Debian's unit reads from /etc/default/etcd.

    The members are the scenario's consensus hosts, named after them; they
    listen on their address on the database's network only (and loopback
    for local tools).
    """
    own = dict(plan.consensus_hosts)[host]
    cluster = ",".join(f"{name}=http://{address}:{ETCD_PEER_PORT}"
                       for name, address in plan.consensus_hosts)
    settings = {
        "ETCD_NAME": host,
        "ETCD_DATA_DIR": "/var/lib/etcd/quizstack",
        "ETCD_LISTEN_PEER_URLS": f"http://{own}:{ETCD_PEER_PORT}",
        "ETCD_LISTEN_CLIENT_URLS": f"http://{own}:{ETCD_CLIENT_PORT},http://127.0.0.1:{ETCD_CLIENT_PORT}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://{own}:{ETCD_PEER_PORT}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://{own}:{ETCD_CLIENT_PORT}",
        "ETCD_INITIAL_CLUSTER": cluster,
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_INITIAL_CLUSTER_TOKEN": f"quizstack-{plan.database_name}",
        # Patroni keeps its leader lease through the v2 API (see patroni_yml).
        "ETCD_ENABLE_V2": "true",
    }
    return HEADER + "".join(f'{key}="{value}"\n' for key, value in settings.items())


def _yaml_string(text):
    """A YAML single-quoted scalar: nothing inside is special but the quote itself."""
    return "'" + str(text).replace("'", "''") + "'"


PATRONI_API_USER = "patroni"


def _patroni_api_writers(plan, secrets):
    """Who may change the cluster through the REST API: basic auth, from a
    database host (allowlist; Patroni checks both on every unsafe method)."""
    password = secrets.get("patroni_api_password")
    if not password:
        return ""
    q = _yaml_string
    allowed = ", ".join(q(f"{a}/32") for a in plan.database_addresses)
    return (
        "  authentication:\n"
        f"    username: {q(PATRONI_API_USER)}\n"
        f"    password: {q(password)}\n"
        f"  allowlist: [{allowed}]\n"
    )


def patroni_yml(plan, host, secrets, version):
    """Patroni's configuration for one database host of a replicated cluster.

    Timings (ttl, loop_wait, retry_timeout) come from the plan: a primary
    whose lease lapses is demoted, and a standby takes over about ttl seconds
    after the primary went silent. synchronous_mode makes a commit wait until
    the standby has it, so a failover loses no acknowledged write; not
    strict, so a primary left alone goes on accepting writes. pg_rewind
    turns a returning old primary into a standby with no step by hand.

    The REST API answers GETs to anyone it is reachable from (the app
    servers' routers ask GET /primary), but a change (PATCH /config, a
    switchover, a restart...) needs `patroni_api_password` and must come
    from a database host: measured before this, an unauthenticated PATCH
    /config from an app server changed the cluster's settings. patronictl,
    run on a database host with this file, sends the same credentials.
    The role always passes the password (dbcluster checks it); without one
    (a test of other parts of this file) the section is left out.
    """
    ttl, loop_wait, retry = plan.failover
    own = plan.database_addresses[plan.database_hosts.index(host)]
    etcd = ", ".join(f"{address}:{ETCD_CLIENT_PORT}" for _, address in plan.consensus_hosts)
    peers = "".join(f"      - host replication replicator {a}/32 scram-sha-256\n"
                    f"      - host postgres rewinder {a}/32 scram-sha-256\n"
                    for a in plan.database_addresses)
    q = _yaml_string
    return HEADER + (
        f"scope: {q(plan.database_name)}\n"
        "namespace: /quizstack/\n"
        f"name: {q(host)}\n"
        "\n"
        "restapi:\n"
        f"  listen: {q(f'{own}:{PATRONI_API_PORT}')}\n"
        f"  connect_address: {q(f'{own}:{PATRONI_API_PORT}')}\n"
        f"{_patroni_api_writers(plan, secrets)}"
        "\n"
        # etcd's v2 API, not etcd3: Patroni 3.0's etcd3 code renews the leader
        # key without comparing it, so a primary that was hung past its lease
        # took the lease back from its successor when it woke, and the writes
        # the successor had acknowledged were lost (measured: db-freeze lost 4).
        # Through v2 every renewal is a compare-and-swap on the leader's name.
        "etcd:\n"
        f"  hosts: [{etcd}]\n"
        "\n"
        "bootstrap:\n"
        "  dcs:\n"
        f"    ttl: {ttl}\n"
        f"    loop_wait: {loop_wait}\n"
        f"    retry_timeout: {retry}\n"
        "    maximum_lag_on_failover: 1048576\n"
        "    synchronous_mode: true\n"
        "    synchronous_mode_strict: false\n"
        "    postgresql:\n"
        "      use_pg_rewind: true\n"
        "      use_slots: true\n"
        "      parameters:\n"
        "        password_encryption: scram-sha-256\n"
        "        wal_log_hints: 'on'\n"
        "        max_connections: 100\n"
        "        max_wal_senders: 5\n"
        "        max_replication_slots: 5\n"
        "        wal_keep_size: 256MB\n"
        "  initdb:\n"
        "    - encoding: UTF8\n"
        "    - data-checksums\n"
        "\n"
        "postgresql:\n"
        f"  listen: {q(f'{own}:{plan.database_port}')}\n"
        f"  connect_address: {q(f'{own}:{plan.database_port}')}\n"
        f"  data_dir: /var/lib/postgresql/{version}/{plan.database_cluster}\n"
        f"  bin_dir: /usr/lib/postgresql/{version}/bin\n"
        "  pgpass: /var/lib/postgresql/.pgpass.patroni\n"
        # Patroni's own connection goes through the local socket (peer), not TCP.
        "  use_unix_socket: true\n"
        "  authentication:\n"
        "    superuser:\n"
        "      username: postgres\n"
        f"      password: {q(secrets['database_superuser_password'])}\n"
        "    replication:\n"
        "      username: replicator\n"
        f"      password: {q(secrets['database_replication_password'])}\n"
        "    rewind:\n"
        "      username: rewinder\n"
        f"      password: {q(secrets['database_rewind_password'])}\n"
        "  parameters:\n"
        "    unix_socket_directories: /var/run/postgresql\n"
        # A hung app server's open transaction releases its locks (a replayed
        # creation waits on them) within seconds, not when the server wakes.
        "    idle_in_transaction_session_timeout: 5s\n"
        f"{_postgresql_logging(plan)}"
        "  pg_hba:\n"
        "      - local all postgres peer\n"
        f"{peers}"
        f"      - host {plan.database_name} {plan.database_user} {plan.app_subnet} scram-sha-256\n"
    )


SLOW_STATEMENT_MS = 200


def _postgresql_logging(plan):
    """With central logs, PostgreSQL says who connects, what failed and what was
    slow (over SLOW_STATEMENT_MS; QUIZ's statements take a few ms). Its log
    goes to Patroni's output, each line marked `postgres:` so the hosts'
    rsyslog names it (render_logs). All apply on a reload, no restart."""
    m = plan.management
    if not m or not m.logs:
        return ""
    return (
        "    log_line_prefix: '%m [%p] postgres: %q%u@%d '\n"
        "    log_connections: 'on'\n"
        f"    log_min_duration_statement: {SLOW_STATEMENT_MS}\n"
        "    log_lock_waits: 'on'\n"
    )


def db_router_cfg(plan):
    """A local TCP router on each app server to whichever database host is primary.

    libpq can take every database host and keep the writable one, but it
    tries them in turn with a connect timeout of at least 2 s each: measured
    in the lab, with the first host dead, every new connection lost 2 s to it,
    more than a read may wait, and the service stayed down until the dead
    host came back. The router asks each host's Patroni (`GET /primary`,
    200 only on the leader) twice a second instead: a new connection goes
    straight to the primary, and when the primary changes or goes silent the
    router cuts the connections to it (`on-marked-down shutdown-sessions`),
    so the app reconnects at once rather than waiting on a dead socket.
    """
    servers = "".join(f"    server {name} {address}:{plan.database_port} check\n"
                      for name, address in zip(plan.database_hosts, plan.database_addresses))
    return HEADER + (
        "global\n"
        f"    stats socket {DB_ROUTER_SOCKET} mode 600 level admin\n"
        "    maxconn 1000\n"
        "\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 500ms\n"
        "    timeout check 1s\n"
        # A member refusing in the instant before its check notices is
        # skipped for the next one.
        "    retries 2\n"
        "    option redispatch 1\n"
        # The app keeps its database connections for minutes between requests.
        "    timeout client 1h\n"
        "    timeout server 1h\n"
        "\n"
        "listen postgres\n"
        f"    bind {DB_ROUTER_ADDRESS}:{plan.database_port}\n"
        "    balance first\n"
        "    option httpchk GET /primary\n"
        "    http-check expect status 200\n"
        # Four checks a second; one answer is enough to follow a new primary
        # (an old one that answers for a moment after waking cannot commit:
        # its synchronous standby is gone), two misses to leave one.
        f"    default-server inter 250ms fall 2 rise 1 port {PATRONI_API_PORT} "
        "on-marked-down shutdown-sessions\n"
        f"{servers}"
        "\n"
        # Reads when there is no primary (a failover, a switchover); the app
        # falls back to them for safe requests only. A standby first (it keeps
        # running through a switchover, while the old primary stops), else any
        # member whose PostgreSQL runs.
        "frontend postgres_reads\n"
        f"    bind {DB_ROUTER_ADDRESS}:{DB_READS_PORT}\n"
        "    use_backend postgres_standbys if { nbsrv(postgres_standbys) gt 0 }\n"
        "    default_backend postgres_members\n"
        "\n"
        "backend postgres_standbys\n"
        "    balance first\n"
        "    option httpchk GET /replica\n"
        "    http-check expect status 200\n"
        f"    default-server inter 250ms fall 2 rise 1 port {PATRONI_API_PORT}\n"
        f"{servers}"
        "\n"
        "backend postgres_members\n"
        "    balance first\n"
        "    option httpchk GET /health\n"
        "    http-check expect status 200\n"
        f"    default-server inter 250ms fall 2 rise 1 port {PATRONI_API_PORT}\n"
        f"{servers}"
    )
