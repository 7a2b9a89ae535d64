"""The SSH keys of a deployment: generated once, kept beside its secrets (0600).

- the operators' key: RSA (the seed asks for RSA), the only key ges accepts
  from outside; `quizstack ssh` and a deployment through ges log in with it;
- the management key: ges's own (Ed25519), the only key every other host
  accepts, so an operator reaches the hosts from ges and nowhere else;
- one host key per host: generated here rather than on the host, so the
  known_hosts that ges and the operators use is written from the start and
  checked strictly (no trust on first use). In the lab every host would
  otherwise share the machine's own host keys.

The private keys never leave the state directory except to the host that
uses them (ges's management key, each host's own host key).
"""

import os
import subprocess
from dataclasses import dataclass, field

from quizstack.errors import DeployError

OPERATOR = "operator_rsa"
SSH_CONFIG = "ssh_config"
MANAGEMENT = "management_ed25519"


@dataclass(frozen=True)
class KeyPair:
    path: str            # the private key's file
    public: str          # the public key's line

    @property
    def private(self):
        with open(self.path) as f:
            return f.read()


@dataclass(frozen=True)
class Keys:
    directory: str
    operator: KeyPair
    management: KeyPair
    hosts: dict = field(default_factory=dict)    # host -> KeyPair (its host key)

    @property
    def known_hosts(self):
        return os.path.join(self.directory, "known_hosts")


def _pair(path, kind, comment):
    if not os.path.exists(path):
        argv = ["ssh-keygen", "-q", "-N", "", "-C", comment, "-f", path + ".new"]
        argv += ["-t", "rsa", "-b", "3072"] if kind == "rsa" else ["-t", kind]
        for leftover in (path + ".new", path + ".new.pub"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True)
        except FileNotFoundError:
            raise DeployError("ssh-keygen not found: install openssh-client")
        except subprocess.CalledProcessError as exc:
            raise DeployError(f"ssh-keygen failed for {path}: {exc.stderr.strip()}")
        os.replace(path + ".new.pub", path + ".pub")
        os.replace(path + ".new", path)
    os.chmod(path, 0o600)
    try:
        with open(path + ".pub") as f:
            public = f.read().strip()
    except OSError as exc:
        raise DeployError(f"{path}.pub: {exc.strerror}; remove {path} to generate a new pair")
    return KeyPair(path, public)


def ssh_config_path(secrets_dir):
    """Where a lab keeps the operators' ssh_config (stack.write_lab_ssh_config)."""
    return os.path.join(str(secrets_dir), "ssh", SSH_CONFIG)


def load_or_create(directory, hosts, label="quizstack"):
    """The keys kept in `directory`/ssh, creating what is missing; `hosts` get host keys."""
    where = os.path.join(str(directory), "ssh")
    os.makedirs(where, mode=0o700, exist_ok=True)
    os.chmod(where, 0o700)
    return Keys(
        directory=where,
        operator=_pair(os.path.join(where, OPERATOR), "rsa", f"{label} operator"),
        management=_pair(os.path.join(where, MANAGEMENT), "ed25519", f"{label} management (ges)"),
        hosts={h: _pair(os.path.join(where, f"host_{h}_ed25519"), "ed25519", f"{label} host {h}")
               for h in hosts},
    )


def known_hosts_lines(keys, names):
    """known_hosts lines: `names` maps a host to the names and addresses it is reached by."""
    lines = []
    for host, aliases in names.items():
        algorithm, blob = keys.hosts[host].public.split()[:2]
        lines.append(f"{','.join(str(a) for a in aliases)} {algorithm} {blob}")
    return "".join(line + "\n" for line in lines)
