"""What Nagios watches, and the files of the monitoring, as pure functions of the plan.

`watch_list(plan)` decides once what is watched and how: every host on the
management network (a ping over it), disk, load and memory everywhere, and
per role what users would notice first — an app server's /healthz, each
HAProxy backend server's state, PostgreSQL answering and the replication,
the consensus, the GlusterFS volume — plus the service address through the
load balancer. From that one list come Nagios's objects, each host's NRPE
commands and the few sudo rules a check needs (the HAProxy socket and the
gluster CLI answer root only). A host added to the scenario (s4) is watched
because it is in the plan, with nothing to edit here.

Nothing here touches a host; monitoring.py decides where each text goes and
which checker accepts it first (`nagios4 -v`, `apache2 -t`, `visudo -c`).
"""

from dataclasses import dataclass

from quizstack.deploy.render import ETCD_CLIENT_PORT, HEADER, PATRONI_API_PORT

PLUGINS = "/usr/lib/nagios/plugins"
PROBES = "/var/lib/quizstack/probes"        # roles.PROBE_DIR: our own plugins land there
NRPE_PORT = 5666
HAPROXY_SOCKET = "/run/haproxy/admin.sock"
HAPROXY_BACKEND = "quiz_servers"
NAGIOS_USER = "nagiosadmin"   # the user Nagios's CGIs and documentation expect as the admin
# Seconds (interval_length = 1): a fault is first seen within CHECK_INTERVAL,
# confirmed (HARD) one RETRY_INTERVAL later, so it shows within about 15 s
# and in any case under 30 s.
CHECK_INTERVAL = 10
RETRY_INTERVAL = 5
MAX_ATTEMPTS = 2

NAGIOS_CFG = "/etc/nagios4/nagios.cfg"
CGI_CFG = "/etc/nagios4/cgi.cfg"
OBJECTS = "/etc/nagios4/quizstack/objects.cfg"
HTPASSWD = "/etc/nagios4/htpasswd.users"
COMMAND_FILE = "/var/lib/nagios4/rw/nagios.cmd"
STATUS_FILE = "/var/lib/nagios4/status.dat"
NAGIOS_LOCK = "/run/nagios4/nagios4.pid"
NRPE_CFG = "/etc/nagios/nrpe.cfg"
SUDOERS = "/etc/sudoers.d/quizstack-nrpe"
SERVICE_HOST = "service"      # Nagios's name for the service address (through the balancer)


@dataclass(frozen=True)
class Watched:
    """A host as Nagios sees it."""

    name: str
    address: str               # where Nagios pings it (the management network)
    alias: str
    groups: tuple = ()         # host groups: the scenario roles it plays


@dataclass(frozen=True)
class Check:
    """One Nagios service: a plugin run on the watched host (through NRPE) or on nagios."""

    host: str
    description: str
    command: str               # the plugin's command line, no argument taken from the network
    name: str                  # NRPE's command name (also part of Nagios's command name)
    local: bool = False        # run by Nagios itself rather than through NRPE
    root: bool = False         # reads what only root can read: through sudo, exactly this line


def _probe(name, *args, root=False):
    line = " ".join((f"/usr/bin/python3 {PROBES}/{name}.py",) + tuple(str(a) for a in args))
    return f"/usr/bin/sudo -n {line}" if root else line


# check_load's thresholds per core (1, 5, 15 min): (warning, critical).
LOAD = ("8,6,4", "16,12,8")
# Lab hosts share the machine's kernel, so their load is the machine's, with
# the tests and benchmarks that run there: a deployment with its port scans
# took this 2-core machine to 4.1 per core over a minute, and two labs with
# their drills beside it to 20 (measured), which is work, not a fault of a
# host. There only a load far past that is reported.
SHARED_KERNEL_LOAD = ("32,28,24", "64,56,48")


def _host_checks(plan, host, local, shared_kernel=False):
    """The checks of one host: its resources, then what its roles serve."""
    warning, critical = SHARED_KERNEL_LOAD if shared_kernel else LOAD
    found = [
        # Per core: a warning from 8 (1 min), 6 (5 min) or 4 (15 min, a
        # sustained overload), critical at twice that.
        ("disk /", "disk", f"{PLUGINS}/check_disk -w 10% -c 5% -p /"),
        ("load", "load", f"{PLUGINS}/check_load -r -w {warning} -c {critical}"),
        ("memory", "memory", _probe("check_memory", 10, 5)),
    ]
    root = set()
    for backend in plan.backends:
        if backend.name == host:
            found.append(("HTTP /healthz", "healthz",
                          f"{PLUGINS}/check_http -I {backend.address} -p {plan.app_port} "
                          "-u /healthz -e 200 -t 5"))
    if host in plan.lb_hosts:
        for backend in plan.backends:
            name = f"backend_{backend.name}"
            found.append((f"HAProxy backend {backend.name}", name,
                          _probe("check_haproxy_server", HAPROXY_SOCKET, HAPROXY_BACKEND,
                                 backend.name, root=True)))
            root.add(name)
    if host in plan.database_hosts:
        address = plan.database_addresses[plan.database_hosts.index(host)]
        # pg_isready's exit codes are Nagios's: 0 accepting, 1 rejecting
        # (starting), 2 no answer, 3 not attempted; it needs no login.
        found.append(("PostgreSQL", "postgresql",
                      f"/usr/bin/pg_isready -h {address} -p {plan.database_port} -t 5"))
        if plan.replicated:
            found.append(("PostgreSQL replication", "replication",
                          _probe("check_patroni", f"http://{address}:{PATRONI_API_PORT}/cluster",
                                 len(plan.database_hosts))))
    for name, address in plan.consensus_hosts:
        if name == host:
            found.append(("etcd", "etcd", f"{PLUGINS}/check_http -I {address} "
                          f"-p {ETCD_CLIENT_PORT} -u /health -s true -t 5"))
    if host in (name for name, _ in plan.storage_hosts):
        name = f"gluster_{plan.volume}"
        found.append((f"GlusterFS volume {plan.volume}", name,
                      _probe("check_gluster", plan.volume, plan.replica, root=True)))
        root.add(name)
    return [Check(host, description, command, name, local=local, root=name in root)
            for description, name, command in found]


def _roles(plan, host):
    roles = []
    for role, hosts in (("firewall", plan.fw_hosts), ("loadbalancer", plan.lb_hosts),
                        ("web", plan.web_hosts), ("storage", [n for n, _ in plan.storage_hosts]),
                        ("database", plan.database_hosts),
                        ("consensus", [n for n, _ in plan.consensus_hosts])):
        if host in hosts:
            roles.append(role)
    m = plan.management
    if host == m.ges:
        roles.append("management")
    if host == m.nagios:
        roles.append("monitoring")
    return tuple(roles)


def watch_list(plan, shared_kernel=False):
    """(hosts, checks) Nagios watches, or ((), ()) when the plan has no Nagios host.

    `shared_kernel`: the hosts are a lab's (their load is the machine's)."""
    m = plan.management
    if m is None or not m.nagios:
        return (), ()
    hosts, checks = [], []
    for host, address in m.addresses.items():
        roles = _roles(plan, host)
        hosts.append(Watched(host, str(address), f"{host} ({', '.join(roles) or 'host'}) "
                             f"on {m.network}", roles))
        checks += _host_checks(plan, host, local=host == m.nagios, shared_kernel=shared_kernel)
    # The service as a client sees it: through the balancer's floating address.
    hosts.append(Watched(SERVICE_HOST, str(plan.lb_address),
                         f"the service address {plan.lb_address}:{plan.port}", ()))
    checks.append(Check(SERVICE_HOST, "HTTP", f"{PLUGINS}/check_http -I {plan.lb_address} "
                        f"-p {plan.port} -u / -t 5", "service_http", local=True))
    return tuple(hosts), tuple(checks)


def nrpe_hosts(plan):
    """The hosts that run NRPE: every watched host but Nagios's own."""
    m = plan.management
    if m is None or not m.nagios:
        return ()
    return tuple(h for h in m.addresses if h != m.nagios)


# -- on every watched host ---------------------------------------------------------------

def nrpe_cfg(plan, host, shared_kernel=False):
    """NRPE on `host`: its management address only, for Nagios only, our commands only."""
    m = plan.management
    _, checks = watch_list(plan, shared_kernel)
    commands = "".join(f"command[{c.name}]={c.command}\n" for c in checks if c.host == host)
    return HEADER + (
        f"server_address={m.address(host)}\n"
        f"server_port={NRPE_PORT}\n"
        f"allowed_hosts={m.address(m.nagios)}\n"
        "nrpe_user=nagios\n"
        "nrpe_group=nagios\n"
        "pid_file=/run/nagios/nrpe.pid\n"
        # Nagios sends a command name, never arguments, nor anything for a shell.
        "dont_blame_nrpe=0\n"
        "allow_bash_command_substitution=0\n"
        "command_timeout=30\n"
        "connection_timeout=60\n"
        "debug=0\n"
        "\n" + commands
    )


def sudoers(plan, host):
    """The exact command lines NRPE's user may run as root on `host` ("" when none)."""
    _, checks = watch_list(plan)
    lines = [f"nagios ALL=(root) NOPASSWD: {c.command.removeprefix('/usr/bin/sudo -n ')}\n"
             for c in checks if c.host == host and c.root]
    if not lines:
        return ""
    return HEADER + "Defaults:nagios !requiretty\n" + "".join(lines)


# -- on the Nagios host ------------------------------------------------------------------

def nagios_cfg(plan, objects=OBJECTS):
    """Nagios's main file: our objects only (none of the package's samples), fast timings."""
    return HEADER + (
        f"cfg_file={objects}\n"
        "log_file=/var/log/nagios4/nagios.log\n"
        "object_cache_file=/var/lib/nagios4/objects.cache\n"
        "precached_object_file=/var/lib/nagios4/objects.precache\n"
        f"status_file={STATUS_FILE}\n"
        # The CGIs (and the checks) read status.dat: keep it a second old at most.
        "status_update_interval=1\n"
        "nagios_user=nagios\n"
        "nagios_group=nagios\n"
        "check_external_commands=1\n"
        f"command_file={COMMAND_FILE}\n"
        f"lock_file={NAGIOS_LOCK}\n"
        "temp_file=/var/lib/nagios4/nagios.tmp\n"
        "temp_path=/tmp\n"
        "check_result_path=/var/lib/nagios4/spool/checkresults\n"
        # Results are read each second, not every 10 s: a fault shows sooner.
        "check_result_reaper_frequency=1\n"
        "max_check_result_reaper_time=5\n"
        "retain_state_information=1\n"
        "state_retention_file=/var/lib/nagios4/retention.dat\n"
        "retention_update_interval=60\n"
        # The program's switches come from this file, not from what was retained.
        "use_retained_program_state=0\n"
        "use_retained_scheduling_info=1\n"
        # Every interval in the objects is in seconds.
        "interval_length=1\n"
        "max_service_check_spread=10\n"
        "max_host_check_spread=10\n"
        "service_inter_check_delay_method=s\n"
        "host_inter_check_delay_method=s\n"
        "service_interleave_factor=s\n"
        "max_concurrent_checks=0\n"
        "service_check_timeout=30\n"
        "host_check_timeout=15\n"
        "cached_host_check_horizon=5\n"
        "cached_service_check_horizon=5\n"
        "execute_service_checks=1\n"
        "execute_host_checks=1\n"
        # Nobody to mail in a lab: the web interface is where faults show.
        "enable_notifications=0\n"
        "enable_event_handlers=0\n"
        "enable_flap_detection=0\n"
        "process_performance_data=0\n"
        "check_for_orphaned_services=1\n"
        "check_for_orphaned_hosts=1\n"
        "check_for_updates=0\n"
        "use_syslog=0\n"
        "log_initial_states=0\n"
        "log_external_commands=1\n"
        "event_broker_options=0\n"
        "date_format=iso8601\n"
        "illegal_object_name_chars=`~!$%^&*|'\"<>?,()=\n"
        "illegal_macro_output_chars=`~$&|'\"<>\n"
        "daemon_dumps_core=0\n"
        "debug_level=0\n"
    )


def _block(kind, fields):
    width = max(len(k) for k, _ in fields)
    return f"define {kind} {{\n" + "".join(f"    {k:<{width}}  {v}\n" for k, v in fields) + "}\n\n"


def _command_name(check):
    return f"qs-{check.name}" if check.local else "qs-nrpe"


def nagios_objects(plan, shared_kernel=False):
    """Every host, host group, command and service Nagios knows, from the watch list."""
    hosts, checks = watch_list(plan, shared_kernel)
    if not hosts:
        return ""
    intervals = [("check_interval", CHECK_INTERVAL), ("retry_interval", RETRY_INTERVAL),
                 ("max_check_attempts", MAX_ATTEMPTS), ("check_period", "always"),
                 ("notifications_enabled", 0), ("contacts", NAGIOS_USER)]
    text = HEADER + "\n"
    text += _block("timeperiod", [("timeperiod_name", "always"), ("alias", "always"),
                                  *((d, "00:00-24:00") for d in (
                                      "monday", "tuesday", "wednesday", "thursday",
                                      "friday", "saturday", "sunday"))])
    text += _block("command", [("command_name", "qs-notify-none"), ("command_line", "/bin/true")])
    text += _block("contact", [("contact_name", NAGIOS_USER), ("alias", "the lab's operators"),
                               ("host_notifications_enabled", 0),
                               ("service_notifications_enabled", 0),
                               ("host_notification_period", "always"),
                               ("service_notification_period", "always"),
                               ("host_notification_options", "n"),
                               ("service_notification_options", "n"),
                               ("host_notification_commands", "qs-notify-none"),
                               ("service_notification_commands", "qs-notify-none")])
    text += _block("command", [("command_name", "qs-ping"), (
        "command_line", f"{PLUGINS}/check_ping -H $HOSTADDRESS$ -w 200,40% -c 1000,80% -p 3 -t 5")])
    text += _block("command", [("command_name", "qs-nrpe"), (
        "command_line", f"{PLUGINS}/check_nrpe -H $HOSTADDRESS$ -p {NRPE_PORT} -t 20 -c $ARG1$")])
    for check in checks:
        if check.local:
            text += _block("command", [("command_name", _command_name(check)),
                                       ("command_line", check.command)])
    text += _block("host", [("name", "qs-host"), ("register", 0),
                            ("check_command", "qs-ping"), *intervals])
    text += _block("service", [("name", "qs-service"), ("register", 0), *intervals])
    for watched in hosts:
        text += _block("host", [("use", "qs-host"), ("host_name", watched.name),
                                ("alias", watched.alias), ("address", watched.address)])
    groups = {}
    for watched in hosts:
        for group in watched.groups:
            groups.setdefault(group, []).append(watched.name)
    for group, members in groups.items():
        text += _block("hostgroup", [("hostgroup_name", group), ("alias", f"{group} hosts"),
                                     ("members", ",".join(members))])
    for check in checks:
        command = _command_name(check) if check.local else f"qs-nrpe!{check.name}"
        text += _block("service", [("use", "qs-service"), ("host_name", check.host),
                                   ("service_description", check.description),
                                   ("check_command", command)])
    return text.rstrip("\n") + "\n"


def cgi_cfg(user=NAGIOS_USER):
    """The CGIs: logins required, and the one user sees and commands everything."""
    rights = "".join(f"authorized_for_{what}={user}\n" for what in (
        "system_information", "configuration_information", "system_commands",
        "all_services", "all_hosts", "all_service_commands", "all_host_commands"))
    return HEADER + (
        f"main_config_file={NAGIOS_CFG}\n"
        "physical_html_path=/usr/share/nagios4/htdocs\n"
        "url_html_path=/nagios4\n"
        "use_authentication=1\n"
        "use_ssl_authentication=0\n"
        "use_pending_states=1\n"
        "refresh_rate=10\n"
        "result_limit=0\n"
        "escape_html_tags=1\n"
        "lock_author_names=1\n"
        "show_context_help=0\n"
        + rights
    )


APACHE_MODULES = ("mpm_prefork", "authn_core", "authn_file", "authz_core", "authz_user",
                  "auth_basic", "alias", "cgi", "dir", "mime")


def apache_conf(plan, php_module):
    """Apache on the Nagios host: Nagios's pages and CGIs on its front address, all behind
    HTTP basic auth, and nothing else (no default site, no other module's pages).

    `php_module` is the path of mod_php (Nagios's front pages are PHP), or "".
    Debian's envvars give the user, the run and log directories.
    """
    m = plan.management
    modules = "".join(f"LoadModule {name}_module /usr/lib/apache2/modules/mod_{name}.so\n"
                      for name in APACHE_MODULES)
    php = ""
    if php_module:
        modules += f"LoadModule php_module {php_module}\n"
        php = ('<FilesMatch "\\.php$">\n'
               "    SetHandler application/x-httpd-php\n"
               "</FilesMatch>\n")
    return HEADER + (
        'ServerRoot "/etc/apache2"\n'
        f"ServerName {m.nagios}\n"
        f"Listen {m.nagios_address}:{m.nagios_port}\n"
        "PidFile ${APACHE_PID_FILE}\n"
        "DefaultRuntimeDir ${APACHE_RUN_DIR}\n"
        "Mutex file:${APACHE_LOCK_DIR} default\n"
        "User ${APACHE_RUN_USER}\n"
        "Group ${APACHE_RUN_GROUP}\n"
        + modules +
        "Timeout 30\n"
        "KeepAlive On\n"
        "StartServers 2\n"
        "MinSpareServers 2\n"
        "MaxSpareServers 4\n"
        "MaxRequestWorkers 20\n"
        "ServerTokens Prod\n"
        "ServerSignature Off\n"
        "TraceEnable Off\n"
        "TypesConfig /etc/mime.types\n"
        "ErrorLog ${APACHE_LOG_DIR}/error.log\n"
        "LogLevel warn\n"
        'LogFormat "%h %l %u %t \\"%r\\" %>s %O" common\n'
        "CustomLog ${APACHE_LOG_DIR}/access.log common\n"
        "DocumentRoot /usr/share/nagios4/htdocs\n"
        "DirectoryIndex index.php index.html\n"
        "\n"
        "<Directory />\n"
        "    AllowOverride None\n"
        "    Require all denied\n"
        "</Directory>\n"
        "ScriptAlias /cgi-bin/nagios4 /usr/lib/cgi-bin/nagios4\n"
        "ScriptAlias /nagios4/cgi-bin /usr/lib/cgi-bin/nagios4\n"
        "Alias /nagios4/stylesheets /etc/nagios4/stylesheets\n"
        "Alias /nagios4 /usr/share/nagios4/htdocs\n"
        "<DirectoryMatch \"^/(usr/share/nagios4/htdocs|usr/lib/cgi-bin/nagios4|etc/nagios4/stylesheets)\">\n"
        "    Options FollowSymLinks\n"
        "    AllowOverride None\n"
        "</DirectoryMatch>\n"
        # Every URL, the front page included, needs the lab's login: a
        # request without it is a 401, whatever it asks for.
        "<Location />\n"
        "    AuthType Basic\n"
        '    AuthName "Nagios (quizstack)"\n'
        "    AuthBasicProvider file\n"
        f"    AuthUserFile {HTPASSWD}\n"
        "    Require valid-user\n"
        "</Location>\n"
        + php
    )


def htpasswd_line(user, password, salt=None):
    """An htpasswd entry for `user` with a bcrypt hash of `password` (cost 10)."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), salt or bcrypt.gensalt(10)).decode()
    # Apache's bcrypt reads the $2y$ prefix; Python's bcrypt writes $2b$ (the same hash).
    return f"{user}:$2y${hashed[4:]}"


def htpasswd_matches(line, user, password):
    """Whether an htpasswd entry is `user` with a bcrypt hash of `password`."""
    import bcrypt

    name, _, hashed = line.strip().partition(":")
    if name != user or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
        return False
    try:
        return bcrypt.checkpw(password.encode(), ("$2b$" + hashed[4:]).encode())
    except ValueError:
        return False


def external_commands(hosts, now):
    """Nagios external commands forcing a check of each host and its services now."""
    return "".join(f"[{now}] SCHEDULE_FORCED_HOST_CHECK;{h};{now}\n"
                   f"[{now}] SCHEDULE_FORCED_HOST_SVC_CHECKS;{h};{now}\n" for h in hosts)
