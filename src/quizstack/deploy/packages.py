"""The Debian packages each phase of the deployment relies on, in one place.

The deployment's first phase (install.py) installs them with apt on hosts
whose init is systemd (real hosts, full-system lab hosts); the lab's
namespace hosts share the machine's /usr, so setup.sh installs all of them on
the machine and the deployment only checks them there — a unit test checks
that setup.sh's list holds every package named here.

Keyed by phase ("role: phase", as deploy.ROLES name them), so what a host
needs follows from the phases that run on it: change a role's phases or the
scenario and the list follows. A phase with nothing of its own maps to ().
"""

# Every deployed host: the probes and plugins the roles install are Python
# programs; the readiness waits use ss and the roles runuser and mountpoint.
BASE = ("python3", "iproute2", "procps", "util-linux")

PACKAGES = {
    "database: postgresql": ("postgresql",),
    "consensus: etcd": ("etcd-server", "etcd-client"),
    # Patroni reaches etcd through python3-etcd, which Debian 13's patroni
    # only recommends (one of several stores): named, so it is there on both.
    "database: patroni": ("postgresql", "patroni", "python3-etcd"),
    "storage: glusterd": ("glusterfs-server",),
    "storage: volume": ("glusterfs-server",),
    # Each database, consensus and storage host's own ruleset (deploy/guard.py).
    "guard: nftables": ("nftables",),
    # quizstack's own environment (QUIZ, gunicorn, Django) is a venv of Debian's Python.
    "web: configure": ("python3-venv",),
    "web: mount": ("glusterfs-client",),
    "web: database router": ("haproxy",),
    "web: migrate": (),
    "web: gunicorn": (),
    "loadbalancer: haproxy": ("haproxy",),
    # keepalived's check of HAProxy asks its socket with nc -U.
    # nftables: the pair's own filter (VRRP only from the peer, on the pair's link).
    "loadbalancer: keepalived": ("keepalived", "netcat-openbsd", "nftables", "netbase"),
    # The ruleset names protocols (vrrp) that nft resolves through /etc/protocols.
    "firewall: nftables": ("nftables", "netbase"),
    "firewall: keepalived": ("keepalived", "conntrackd"),
    "monitoring: nrpe": ("nagios-nrpe-server", "monitoring-plugins", "sudo"),
    "monitoring: nagios": ("nagios4", "apache2", "monitoring-plugins", "nagios-nrpe-plugin", "curl"),
    "access: sshd": ("openssh-server", "netcat-openbsd"),
    "logs: collector": ("rsyslog", "rsyslog-relp"),
    "logs: forward": ("rsyslog", "rsyslog-relp"),
}


def for_phases(keys):
    """The packages of some phases (BASE first), each once, in a stable order."""
    found = list(BASE)
    for key in keys:
        for package in PACKAGES[key]:
            if package not in found:
                found.append(package)
    return tuple(found)


def per_host(phases):
    """host -> its packages, from the phases (deploy's Phase or anything with .key and .hosts)."""
    keys = {}
    for phase in phases:
        for host in phase.hosts:
            keys.setdefault(host, []).append(phase.key)
    return {host: for_phases(found) for host, found in keys.items()}
