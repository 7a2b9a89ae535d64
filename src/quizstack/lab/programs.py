"""A lab host's programs, checked, stopped and started from outside: the `stop` fault's hands.

A namespace host runs its services under supervisord, which the lab reaches
over its control socket through /proc/<init>/root, making the XML-RPC calls
`supervisorctl stop|start` makes without starting an interpreter inside the
host, so a fault takes milliseconds, not a quarter second; a full-system host
runs systemd, whose units the lab drives with systemctl inside it. Either way
the answer is the program manager's own words in a LabError naming the lab
and the host. When to stop and when to start again is faults.py's decision:
this module only knows how, and what a program's state allows.
"""

from __future__ import annotations

import http.client
import socket
import xmlrpc.client

from quizstack.errors import LabError, QuizstackError
from quizstack.lab import render

RPC_TIMEOUT = 60.0
SYSTEMCTL_TIMEOUT = 90.0   # a unit stopping may take its TimeoutStopSec (a drained gunicorn: seconds)
STOPPABLE = ("RUNNING", "STARTING", "BACKOFF")
ALREADY_STARTED = 60    # supervisor.xmlrpc.Faults (supervisor is the machine's, not our dependency)
RUNNING_UNIT = ("active", "activating", "reloading")


def check(lab, host: str, init: dict, service: str):
    """Refuse, saying why, unless `service` is a program (a unit, on a full system)
    of the host that is running now: a stop must have something to stop."""
    if init.get("system"):
        loaded, active = _unit_state(lab, host, service)
        if loaded != "loaded":
            raise LabError(f"lab {lab.name}: host {host} has no systemd unit {service!r} ({loaded or 'unknown'})")
        if active not in RUNNING_UNIT:
            raise LabError(f"lab {lab.name}: host {host}: unit {service} is {active}, not running: nothing to stop")
        return
    try:
        found = programs(init)
    except (OSError, xmlrpc.client.Error) as exc:
        raise LabError(f"lab {lab.name}: host {host}: supervisord does not answer ({exc})") from None
    if service not in found:
        raise LabError(f"lab {lab.name}: host {host} has no program {service!r} "
                       f"(programs: {', '.join(sorted(found)) or 'none'})")
    if found[service] not in STOPPABLE:
        raise LabError(f"lab {lab.name}: host {host}: program {service} is "
                       f"{found[service]}, not running: nothing to stop")


def stop(lab, host: str, init: dict, service: str):
    """Stop the program (unit) and return once it has stopped."""
    if init.get("system"):
        _systemctl(lab, host, "stop", service)
        return
    try:
        with _supervisor(init) as rpc:
            rpc.supervisor.stopProcess(service, True)
    except xmlrpc.client.Fault as exc:
        raise LabError(f"lab {lab.name}: host {host}: cannot stop {service}: {exc.faultString}") from None
    except OSError as exc:
        raise LabError(f"lab {lab.name}: host {host}: supervisord does not answer ({exc})") from None


def start(lab, host: str, init: dict, service: str):
    """Start the program (unit) again; one already running (a boot started it) is fine."""
    if init.get("system"):
        _systemctl(lab, host, "start", service)   # a unit already running: no-op
        return
    try:
        with _supervisor(init) as rpc:
            rpc.supervisor.startProcess(service, True)
    except xmlrpc.client.Fault as exc:
        if exc.faultCode == ALREADY_STARTED:
            return
        raise LabError(f"lab {lab.name}: host {host}: program {service} "
                       f"did not start again: {exc.faultString}") from None
    except OSError as exc:
        raise LabError(f"lab {lab.name}: host {host}: supervisord does not answer ({exc})") from None


def programs(init: dict) -> dict[str, str]:
    """The host's supervisor programs: {name: state} (group:name inside a group)."""
    with _supervisor(init, timeout=10) as rpc:
        infos = rpc.supervisor.getAllProcessInfo()
    return {(i["name"] if i["group"] == i["name"] else f"{i['group']}:{i['name']}"): i["statename"]
            for i in infos}


# -- supervisord over its control socket ------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._socket_path)
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, socket_path: str, timeout: float):
        super().__init__()
        self._socket_path = socket_path
        self._timeout = timeout

    def make_connection(self, host):
        # Kept where Transport.close() (ServerProxy's `with`) finds and closes it.
        if not self._connection[1]:
            self._connection = host, _UnixConnection(self._socket_path, self._timeout)
        return self._connection[1]


def _supervisor(init: dict, timeout: float = RPC_TIMEOUT) -> xmlrpc.client.ServerProxy:
    """The host's supervisord, over its control socket reached through /proc/<init>/root."""
    path = f"/proc/{init['pid']}/root{render.SUPERVISOR_SOCKET}"
    return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixTransport(path, timeout))


# -- systemd units of full-system hosts -----------------------------------------------------


def _systemctl(lab, host: str, verb: str, unit: str):
    """systemctl VERB UNIT inside a full-system host; its own words in the error if it refuses."""
    try:
        lab.run(host, ["systemctl", verb, unit], timeout=SYSTEMCTL_TIMEOUT)
    except QuizstackError as exc:
        raise LabError(f"lab {lab.name}: host {host}: systemctl {verb} {unit} failed: {exc}") from None


def _unit_state(lab, host: str, unit: str) -> tuple[str, str]:
    """(LoadState, ActiveState) of a systemd unit of a full-system host."""
    try:
        done = lab.run(host, ["systemctl", "show", "--property=LoadState,ActiveState", "--", unit],
                       timeout=SYSTEMCTL_TIMEOUT)
    except QuizstackError as exc:
        raise LabError(f"lab {lab.name}: host {host}: systemd does not answer ({exc})") from None
    props = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return props.get("LoadState", ""), props.get("ActiveState", "")
