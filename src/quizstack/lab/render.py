"""Pure renderers of the files a lab host boots with.

Each returns the text of one file from the topology; the lab writes them into
the host's copy-on-write layer before the host's init starts. Unit tests
compare them with expected text.
"""

from __future__ import annotations

from quizstack.topology import Host, Topology

SUPERVISOR_SOCKET = "/run/supervisor.sock"
SUPERVISOR_CONF = "/etc/supervisor/supervisord.conf"


def supervisord_conf(host: str) -> str:
    """The init's configuration, at Debian's standard paths.

    Services are added by writing /etc/supervisor/conf.d/<name>.conf and
    running `supervisorctl update`, as on any Debian host with supervisor.
    """
    return f"""\
; supervisord as the init (PID 1) of lab host {host}; written by quizstack.
; Add services as /etc/supervisor/conf.d/<name>.conf, then `supervisorctl update`.

[unix_http_server]
file={SUPERVISOR_SOCKET}
chmod=0700

[supervisord]
nodaemon=true
user=root
logfile=/var/log/supervisor/supervisord.log
logfile_maxbytes=5MB
logfile_backups=2
pidfile=/run/supervisord.pid
childlogdir=/var/log/supervisor

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{SUPERVISOR_SOCKET}

[include]
files = /etc/supervisor/conf.d/*.conf
"""


def etc_hostname(host: Host) -> str:
    return f"{host.name}\n"


def etc_hosts(topo: Topology, lab: str) -> str:
    """Every lab host: its name on its first address, name-<network> on each."""
    lines = [
        f"# lab {lab}, scenario {topo.name}: written by quizstack",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
        "",
    ]
    for host in topo.hosts.values():
        for index, iface in enumerate(host.interfaces):
            alias = f"{host.name}-{iface.network.lower()}"
            names = f"{host.name} {alias}" if index == 0 else alias
            lines.append(f"{iface.address}\t{names}")
    # A pair's floating addresses carry the group's name, as one host would.
    for group in topo.floating.values():
        for index, floating in enumerate(group.addresses):
            alias = f"{group.name}-{floating.network.lower()}"
            names = f"{group.name} {alias}" if index == 0 else alias
            lines.append(f"{floating.address}\t{names}")
    return "\n".join(lines) + "\n"
