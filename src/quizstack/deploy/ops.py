"""The few operations and facts the roles are made of, beyond pyinfra's own.

Each operation reads what is there when it runs and yields commands only for
the difference, so a second deployment yields nothing and reports no change.
Three ideas recur:

- `config_file`: a file rendered elsewhere is uploaded beside its target,
  passed through the service's own checker, and only then moved in place;
- `service`: a long-running program under the host's init — supervisord in
  the lab (a program in /etc/supervisor/conf.d), systemd on real hosts;
- `wait_until`: readiness is polled with a deadline, never assumed after a sleep;
  when the condition already holds the operation does nothing.
"""

import hashlib
import io
import shlex
import xmlrpc.client
from xml.parsers.expat import ExpatError

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, HiddenValue, QuoteString, StringCommand, operation
from pyinfra.facts.files import Directory, File, Sha1File

from quizstack.deploy import render


class InitSystem(FactBase):
    """Which init runs the host's services: 'supervisord' (lab hosts) or 'systemd'."""

    def command(self):
        return ("if [ -S /run/supervisor.sock ]; then echo supervisord; "
                "elif [ -d /run/systemd/system ]; then echo systemd; else echo none; fi")

    def process(self, output):
        return output[0].strip() if output else "none"


class Succeeds(FactBase):
    """Whether a shell command exits 0 on the host (its output is ignored)."""

    def command(self, command):
        return f"if ( {command} ) >/dev/null 2>&1; then echo yes; else echo no; fi"

    @staticmethod
    def default():
        return False

    def process(self, output):
        return bool(output) and output[-1].strip() == "yes"


class Lines(FactBase):
    """The output lines of a command; an empty list if it fails."""

    def command(self, command):
        return f"( {command} ) 2>/dev/null || true"

    @staticmethod
    def default():
        return []

    def process(self, output):
        return list(output)


class SupervisorState(FactBase):
    """The state supervisord reports for one program (RUNNING, STOPPED, ... or None).

    Asked over supervisord's own socket (XML-RPC, one curl) rather than with
    supervisorctl: a Python program's start costs ~0.15 s, and a deployment
    asks every host about every program; 15 hosts at once on two cores made
    that most of a no-change deployment's time.
    """

    def command(self, program):
        body = xmlrpc.client.dumps((program,), "supervisor.getProcessInfo").replace("\n", "")
        return ("curl -s --max-time 5 --unix-socket /run/supervisor.sock "
                f"-H 'Content-Type: text/xml' --data-binary {shlex.quote(body)} "
                "http://localhost/RPC2 2>/dev/null || true")

    def process(self, output):
        try:
            (info,), _ = xmlrpc.client.loads("\n".join(output))
        except (xmlrpc.client.Fault, ExpatError, ValueError):
            return None     # no such program, or no answer
        return info.get("statename") if isinstance(info, dict) else None


def sha1(text):
    return hashlib.sha1(text.encode()).hexdigest()


# Every file this deployment put in place or found right: scenario host ->
# {path: sha1 of the wanted content}. A later `up` verifies them instead of
# deploying again when nothing it would deploy has changed (deploy/verify.py).
MANAGED = {}


def _managed(path, content_sha1):
    name = host.data.get("scenario_host") or host.name
    MANAGED.setdefault(name, {})[path] = content_sha1


def _mode_of(fact):
    """The permission bits, as pyinfra's octal-looking int (755); special bits ignored."""
    return None if not fact else str(fact.get("mode"))[-3:]


@operation()
def config_file(path, content, mode="644", user="root", group="root", check=None):
    """Put `content` at `path`, accepted by `check` first (an argv with `{}` for the file).

    Nothing is written when the file already has that content, mode and owner.
    """
    _managed(path, sha1(content))
    current = host.get_fact(File, path=path)
    same_content = current and host.get_fact(Sha1File, path=path) == sha1(content)
    same_meta = current and _mode_of(current) == str(int(mode)) and \
        current.get("user") == user and current.get("group") == group
    if same_content and same_meta:
        return
    directory = path.rsplit("/", 1)[0] or "/"
    yield StringCommand("mkdir", "-p", QuoteString(directory))
    staged = f"{directory}/.{path.rsplit('/', 1)[1]}.quizstack-new"
    yield FileUploadCommand(io.BytesIO(content.encode()), staged)
    yield StringCommand("chown", f"{user}:{group}", QuoteString(staged))
    yield StringCommand("chmod", mode, QuoteString(staged))
    if check:
        argv = [staged if a == "{}" else a for a in check]
        # On rejection, show the checker's words and leave the live file alone.
        yield StringCommand(*map(QuoteString, argv), "||", "{", "rm", "-f", QuoteString(staged),
                            ";", "exit", "1", ";", "}")
    yield StringCommand("mv", "-f", QuoteString(staged), QuoteString(path))


@operation()
def directory(path, mode="755", user="root", group="root"):
    current = host.get_fact(Directory, path=path)
    if current is False:
        raise ValueError(f"{path} exists and is not a directory")
    if current is None:
        yield StringCommand("mkdir", "-p", QuoteString(path))
    elif current and _mode_of(current) == str(int(mode)) and current.get("user") == user \
            and current.get("group") == group:
        return
    yield StringCommand("chown", f"{user}:{group}", QuoteString(path))
    yield StringCommand("chmod", mode, QuoteString(path))


WAIT = "wait: "


def is_wait(label):
    """Waiting for readiness changes nothing, even when it had to poll."""
    return label.startswith(WAIT)


@operation()
def wait_until(command, what, timeout=60, interval=0.2):
    """Poll `command` until it succeeds; on timeout fail saying what was awaited.

    Give it a name starting with WAIT ("wait: ..."), so it never counts as a change.
    """
    if host.get_fact(Succeeds, command=command):
        return
    tries = max(1, int(timeout / interval))
    yield (
        f"i=0; until ( {command} ) >/dev/null 2>&1; do i=$((i+1)); "
        f"if [ $i -ge {tries} ]; then echo {shlex.quote('timed out after %ss waiting for %s' % (timeout, what))} >&2; "
        f"( {command} ) 2>&1 | tail -n 3 >&2; exit 1; fi; sleep {interval}; done"
    )


@operation()
def service(service_name, command, user=None, oneshot=False, unit=None, restart=(), priority=500,
            stopsignal="TERM", reload=(), reload_signal="HUP"):
    """A program kept running by the host's init, restarted when `restart` ops changed.

    On lab hosts the init is supervisord: the program goes to
    /etc/supervisor/conf.d/<name>.conf. On real Debian hosts the init is
    systemd and `unit` names the package's own unit (postgresql@15-quiz,
    glusterd, haproxy, nftables, ...), which is enabled and started.
    """
    name = service_name
    init = host.get_fact(InitSystem)
    changed = any(op.did_change() for op in restart)
    # `reload` ops changed: the program rereads its files on `reload_signal`
    # (no restart, which for Patroni on the primary would be a failover, and
    # for HAProxy would drop every connection).
    reloaded = not changed and any(op.did_change() for op in reload)
    if init == "supervisord":
        conf = render.supervisor_program(name, command, user=user, oneshot=oneshot,
                                         priority=priority, stopsignal=stopsignal)
        path = f"/etc/supervisor/conf.d/{name}.conf"
        _managed(path, sha1(conf))
        fresh = host.get_fact(Sha1File, path=path) != sha1(conf)
        if fresh:
            yield FileUploadCommand(io.BytesIO(conf.encode()), path)
            # `update` (re)starts exactly the programs whose section changed.
            yield StringCommand("supervisorctl", "update", name)
        state = host.get_fact(SupervisorState, program=name)
        if oneshot:
            if changed and not fresh:
                yield StringCommand("supervisorctl", "start", name)
            return
        if changed and not fresh:
            yield StringCommand("supervisorctl", "restart", name)
        elif not fresh and state != "RUNNING":
            yield StringCommand("supervisorctl", "start", name)
        elif reloaded and not fresh:
            yield StringCommand("supervisorctl", "signal", reload_signal, name)
    elif init == "systemd":
        if not unit:
            raise ValueError(f"service {name}: no systemd unit given")
        active = host.get_fact(Succeeds, command=f"systemctl is-active --quiet {unit}")
        enabled = host.get_fact(Succeeds, command=f"systemctl is-enabled --quiet {unit}")
        if not enabled:
            yield StringCommand("systemctl", "enable", unit)
        # A one-shot unit (nftables) stays active after its run: it runs
        # again when its files changed, not at every deployment.
        if changed and (active or oneshot):
            yield StringCommand("systemctl", "restart", unit)
        elif not active:
            yield StringCommand("systemctl", "start", unit)
        elif reloaded:
            yield StringCommand("systemctl", "reload", unit)
    else:
        raise ValueError(f"service {name}: the host runs neither supervisord nor systemd")


@operation()
def sql(statement, database="postgres", masked=False):
    """Run one SQL statement as the postgres superuser, over the local socket."""
    text = QuoteString(HiddenValue(statement) if masked else statement)
    yield StringCommand("runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v",
                        "ON_ERROR_STOP=1", "-d", database, "-c", text)


@operation()
def sysctl(key, value):
    """Set a kernel parameter now, if it differs (a sysctl.d file keeps it for boots)."""
    current = host.get_fact(Lines, command=f"sysctl -n {shlex.quote(key)}")
    if current and current[0].strip() == str(value):
        return
    yield StringCommand("sysctl", "-q", "-w", f"{key}={value}")
