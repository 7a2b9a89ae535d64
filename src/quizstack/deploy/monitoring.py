"""nagios, and NRPE on every host it watches: the monitoring, over the management network.

Every host on the management network but nagios runs NRPE, listening on its
management address only and answering only nagios's management address;
Nagios sends a command name, never an argument (dont_blame_nrpe=0), so what
can run is exactly the list render_monitoring.watch_list wrote for that host.
The two checks that read what only root may read (HAProxy's admin socket,
the gluster CLI) run through sudo, each with its one exact command line.

On nagios, Nagios 4 runs with a configuration generated from the plan (our
objects only, none of the package's samples), validated by `nagios4 -v`
before it goes live and reread on SIGHUP. Apache serves Nagios's pages and
CGIs on nagios's front address, every URL behind HTTP basic auth for one
user whose password is generated per lab; its file passes `apache2 -t` first.
The phase ends when Nagios is running its checks and Apache answers 401 to a
request without credentials.
"""

from pyinfra import host
from pyinfra.api import operation

from quizstack.deploy import ops
from quizstack.deploy import render_monitoring as rm
from quizstack.deploy.roles import Phase, install_probe, scenario_host

APACHE_CONF = "/etc/apache2/apache2.conf"
# Checks the objects before they go live: the main file, pointing at the staged copy.
OBJECTS_CHECK = "/etc/nagios4/quizstack/check-objects.cfg"
PLUGINS = ("check_memory", "check_haproxy_server", "check_gluster", "check_patroni")


def phases(plan, context):
    if plan.management is None or not plan.management.nagios:
        return []
    # Neither needs another role: NRPE and Nagios start at once, and their
    # checks turn OK as the services they watch come up.
    return [
        Phase("monitoring", "nrpe", rm.nrpe_hosts(plan), add_nrpe_ops),
        Phase("monitoring", "nagios", (plan.management.nagios,), add_nagios_ops),
    ]


def _staged(path):
    """Where ops.config_file stages a new `path` while its checker runs."""
    directory, name = path.rsplit("/", 1)
    return f"{directory}/.{name}.quizstack-new"


def add_plugins():
    for name in PLUGINS:
        install_probe(name)


def _shared_kernel():
    """Whether this host's load average is the machine's: a lab host (supervisord as
    its init) or a container (a full-system lab host: systemd-nspawn)."""
    if host.get_fact(ops.InitSystem) == "supervisord":
        return True
    return host.get_fact(ops.Lines, command="systemd-detect-virt --container || true") not in (
        [], ["none"])


def add_nrpe_ops(plan, context):
    me = scenario_host()
    add_plugins()
    rules = rm.sudoers(plan, me)
    if rules:
        ops.config_file(rm.SUDOERS, rules, mode="440",
                        check=["/usr/sbin/visudo", "-c", "-q", "-f", "{}"], name="sudo rules for NRPE")
    cfg = ops.config_file(rm.NRPE_CFG, rm.nrpe_cfg(plan, me, _shared_kernel()), name="nrpe.cfg")
    # /run starts empty at each boot: NRPE's pid file directory is made first.
    ops.service("nrpe", "/bin/sh -c 'install -d -o nagios -g nagios /run/nagios && exec "
                f"/usr/sbin/nrpe -c {rm.NRPE_CFG} -f'", unit="nagios-nrpe-server",
                restart=(cfg,), priority=600, name="nrpe service")
    address = plan.management.address(me)
    ops.wait_until(f"ss -Hltn 'src {address} and sport = :{rm.NRPE_PORT}' | grep -q LISTEN",
                   f"NRPE listening on {address}:{rm.NRPE_PORT}", name="wait: nrpe listening")


class PhpModule(ops.FactBase):
    """The path of Apache's PHP module (libphp<version>.so), or ''."""

    def command(self):
        return "ls /usr/lib/apache2/modules/ 2>/dev/null | grep '^libphp.*\\.so$' || true"

    def process(self, output):
        found = sorted(line.strip() for line in output if line.strip())
        return f"/usr/lib/apache2/modules/{found[-1]}" if found else ""


@operation()
def htpasswd(path, user, password, group):
    """The login file: kept while it still verifies `password`, else a fresh bcrypt hash.

    bcrypt salts each hash at random, so the file is rewritten only when the
    stored one no longer matches; the clear password never leaves this machine.
    """
    current = host.get_fact(ops.Lines, command=f"cat {path}")
    line = next((l.strip() for l in current if rm.htpasswd_matches(l, user, password)), None)
    content = (line or rm.htpasswd_line(user, password)) + "\n"
    yield from ops.config_file._inner(path, content, mode="640", user="root", group=group)


def add_nagios_ops(plan, context):
    m = plan.management
    add_plugins()
    ops.directory("/etc/nagios4/quizstack", name="objects directory")
    ops.config_file(OBJECTS_CHECK, rm.nagios_cfg(plan, objects=_staged(rm.OBJECTS)),
                    name="objects checker")
    objects = ops.config_file(rm.OBJECTS, rm.nagios_objects(plan, _shared_kernel()),
                              check=["/usr/sbin/nagios4", "-v", OBJECTS_CHECK],
                              name="nagios objects")
    main = ops.config_file(rm.NAGIOS_CFG, rm.nagios_cfg(plan),
                           check=["/usr/sbin/nagios4", "-v", "{}"], name="nagios.cfg")
    ops.config_file(rm.CGI_CFG, rm.cgi_cfg(), name="cgi.cfg")
    # The command file is a FIFO Nagios makes at start; a stale one (a kill -9)
    # would stop it, so it goes first, as Debian's unit does.
    ops.service("nagios4", "/bin/sh -c 'install -d -o nagios -g nagios /run/nagios4 && "
                f"rm -f {rm.COMMAND_FILE} && exec /usr/sbin/nagios4 {rm.NAGIOS_CFG}'",
                unit="nagios4", reload=(objects, main), priority=600, name="nagios service")

    htpasswd(rm.HTPASSWD, rm.NAGIOS_USER, context.secrets["nagios_password"], "www-data",
             name="nagios login")
    conf = ops.config_file(APACHE_CONF, rm.apache_conf(plan, host.get_fact(PhpModule)),
                           # apache2 -t wants its run and lock directories, which only the
                           # package's scripts or its own unit make: gone after a reboot.
                           check=["/bin/sh", "-c", ". /etc/apache2/envvars && "
                                  'mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" && '
                                  'exec /usr/sbin/apache2 -t -f "$1"', "apache2-check", "{}"],
                           name="apache2.conf")
    ops.service("apache2", "/bin/sh -c '. /etc/apache2/envvars && mkdir -p \"$APACHE_RUN_DIR\" "
                "\"$APACHE_LOCK_DIR\" \"$APACHE_LOG_DIR\" && exec /usr/sbin/apache2 -DFOREGROUND'",
                unit="apache2", restart=(conf,), priority=650,
                name="apache2 service")
    # status.dat is rewritten every second by a Nagios that runs its event loop.
    ops.wait_until(f"[ -n \"$(find {rm.STATUS_FILE} -newermt '-5 seconds' 2>/dev/null)\" ]",
                   "Nagios running its checks", timeout=60, name="wait: nagios running")
    url = f"http://{m.nagios_address}:{m.nagios_port}/nagios4/"
    ops.wait_until(f"[ \"$(curl -s -o /dev/null -m 2 -w '%{{http_code}}' {url})\" = 401 ]",
                   f"Apache asking for a login at {url}", timeout=60, name="wait: apache answering")
