"""access: SSH by keys only, the operators through ges, ges to every host.

Every host on the management network runs OpenSSH's sshd listening on its
management address only (ges also on the address the clients reach through
the firewall), with passwords and keyboard-interactive login off and root
allowed by key only. Which keys are accepted is decided here, not in a
user's ~/.ssh: `AuthorizedKeysFile` points to a root-owned file per user.

- ges accepts the operators' RSA key (and only RSA keys);
- every other host accepts only ges's management key;
- each host has its own host key, generated with the deployment's keys, so
  ges's /etc/ssh/ssh_known_hosts and the operators' known_hosts are written
  in advance and checked strictly.

From ges an operator reaches every host by name (`ssh s1`): /root/.ssh/config
on ges names each host's management address. The operators' own ssh_config
(`controller_ssh_config`) reaches ges and jumps through it (`ssh -W`).
"""

import os

from quizstack.deploy import ops
from quizstack.deploy.sshkeys import SSH_CONFIG
from quizstack.deploy.roles import Phase, scenario_host

SSHD_CONF = "/etc/ssh/sshd_config.d/quizstack.conf"
KEY_DIR = "/etc/ssh/quizstack"
HOST_KEY = f"{KEY_DIR}/ssh_host_ed25519_key"
AUTHORIZED = f"{KEY_DIR}/authorized_keys"
GES_KEY = "/root/.ssh/id_ed25519"
GES_CLIENT_CONF = "/root/.ssh/config"
GES_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
# The only user algorithms ges accepts from outside: the seed asks for RSA.
RSA_ONLY = "rsa-sha2-512,rsa-sha2-256"
HEADER = "# Written by quizstack from the scenario; changes here are overwritten.\n"


def phases(plan, context):
    m = plan.management
    if not m or not m.ges:
        return []
    # Last of all: a first deployment of real hosts (`deploy --direct`) reaches
    # them over SSH as they are, and this phase ends that way in.
    return [Phase("access", "sshd", tuple(m.addresses), add_ops)]


def listen_addresses(plan, host):
    m = plan.management
    addresses = [m.address(host)]
    if host == m.ges:
        addresses.insert(0, m.ges_address)
    return addresses


def sshd_conf(plan, host):
    """sshd's settings for one host, read before Debian's own (first value wins)."""
    m = plan.management
    lines = [HEADER.rstrip("\n"),
             "# Keys only; root by key only; which keys is decided by quizstack."]
    lines += [f"ListenAddress {a}" for a in listen_addresses(plan, host)]
    lines += [
        f"HostKey {HOST_KEY}",
        f"AuthorizedKeysFile {AUTHORIZED}/%u",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitEmptyPasswords no",
        "PermitRootLogin prohibit-password",
        "AllowUsers root",
        "X11Forwarding no",
    ]
    if host == m.ges:
        lines += [f"PubkeyAcceptedAlgorithms {RSA_ONLY}",
                  "# ges is the jump host: the operators' connections go on from here.",
                  "AllowTcpForwarding yes"]
    else:
        lines += ["AllowTcpForwarding no"]
    return "\n".join(lines) + "\n"


def ges_client_conf(plan):
    """ges's /root/.ssh/config: every host by name, with the management key."""
    m = plan.management
    blocks = [HEADER]
    for host in m.managed:
        blocks.append(f"Host {host}\n    HostName {m.address(host)}\n")
    blocks.append(f"Host *\n    User root\n    IdentityFile {GES_KEY}\n    IdentitiesOnly yes\n"
                  "    StrictHostKeyChecking yes\n    BatchMode yes\n")
    return "\n".join(blocks)


def ges_known_hosts(plan, keys):
    from quizstack.deploy.sshkeys import known_hosts_lines

    m = plan.management
    return HEADER + known_hosts_lines(keys, {h: (h, m.address(h)) for h in m.managed})


def controller_known_hosts(plan, keys, ges_address=None):
    from quizstack.deploy.sshkeys import known_hosts_lines

    m = plan.management
    names = {m.ges: ("ges", ges_address or m.ges_address, m.address(m.ges))}
    names.update({h: (h, m.address(h)) for h in m.managed})
    return known_hosts_lines(keys, names)


def controller_ssh_config(plan, keys, ges_address=None, ges_proxy=None):
    """The operators' ssh_config: ges with the operators' key, every host through it.

    `ges_proxy` is a ProxyCommand for the first hop (the lab enters a
    client's network namespace with it); `ges_address` overrides where ges
    is reached (a real deployment's public address). The jump through ges is
    written as OpenSSH's own `ssh -W` (what ProxyJump runs): pyinfra's
    ProxyJump drops the first hop's ProxyCommand, so it could not start
    from the lab's client.
    """
    m = plan.management
    config = os.path.join(keys.directory, SSH_CONFIG)
    lines = [HEADER,
             f"Host {m.ges}\n    HostName {ges_address or m.ges_address}\n"
             f"    IdentityFile {keys.operator.path}\n"
             + (f"    ProxyCommand {ges_proxy}\n" if ges_proxy else "")]
    for host in m.managed:
        lines.append(f"Host {host}\n    HostName {m.address(host)}\n"
                     f"    ProxyCommand ssh -F {config} -W %h:%p {m.ges}\n"
                     f"    IdentityFile {keys.management.path}\n")
    lines.append(f"Host *\n    User root\n    IdentitiesOnly yes\n"
                 f"    UserKnownHostsFile {keys.known_hosts}\n    StrictHostKeyChecking yes\n"
                 "    ConnectTimeout 10\n")
    return "\n".join(lines)


def add_ops(plan, context):
    host = scenario_host()
    m = plan.management
    keys = context.keys
    ops.directory("/run/sshd", mode="755", name="ssh: privilege separation directory")
    ops.directory(KEY_DIR, mode="755", name="ssh: key directory")
    ops.directory(AUTHORIZED, mode="755", name="ssh: authorized keys directory")
    pair = keys.hosts[host]
    private = ops.config_file(HOST_KEY, pair.private, mode="600", name="ssh: host key")
    ops.config_file(HOST_KEY + ".pub", pair.public + "\n", name="ssh: host public key")
    accepted = keys.operator.public if host == m.ges else keys.management.public
    ops.config_file(f"{AUTHORIZED}/root", accepted + "\n", name="ssh: the accepted key")
    conf = ops.config_file(SSHD_CONF, sshd_conf(plan, host), check=["/usr/sbin/sshd", "-t", "-f", "{}"],
                           name="sshd_config")
    if host == m.ges:
        ops.directory("/root/.ssh", mode="700", name="ssh: ges's own directory")
        ops.config_file(GES_KEY, keys.management.private, mode="600", name="ssh: the management key")
        ops.config_file(GES_CLIENT_CONF, ges_client_conf(plan), mode="600", name="ssh: every host by name")
        ops.config_file(GES_KNOWN_HOSTS, ges_known_hosts(plan, keys), name="ssh: known hosts")
    ops.service("sshd", "/bin/sh -c 'mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e'", unit="ssh",
                restart=(conf, private), name="sshd")
    address = m.address(host)
    ops.wait_until(f"nc -z -w 1 {address} 22", f"sshd on {address}:22", timeout=20,
                   name="wait: sshd answers")
