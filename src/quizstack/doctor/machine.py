"""What the doctor reads from this machine: files, programs' versions, and tries.

`Machine` is where the doctor runs things: it reads the system's files, asks
dpkg and the programs what they are, and tries the lab's kernel features in
throwaway network namespaces that vanish with their process, never in the
machine's own, so nothing here changes the machine. Each fact is read once
and handed as captured text (or a plain value) to the judges, which never run
anything; the items only add a stat or a `read` of a small file. The tries'
texts, LINK_PROBE and NFT_PROBE, live here with the code that feeds them to
`ip` and `nft`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from functools import cached_property
from pathlib import Path

PROBE_TIMEOUT = 10

# Tried with `ip -force -batch -` in a throwaway network namespace; the line
# numbers say which kernel feature a failure belongs to.
LINK_PROBE = (
    ("bridge", "link add qsdoctor-br type bridge forward_delay 0 stp_state 0"),
    ("veth", "link add qsdoctor-v0 type veth peer name qsdoctor-v1"),
    ("attach", "link set qsdoctor-v0 master qsdoctor-br up"),
)
# The firewall's constructs (deploy/render.py nftables_conf), loaded for real
# in a throwaway network namespace: the kernel's nf_tables with conntrack,
# limits and NFLOG. Protocol 112 is VRRP, by number: /etc/protocols is netbase's.
NFT_PROBE = """\
table inet quizstack_doctor {
    chain input {
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ct state established,related accept
        ip protocol 112 accept
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state invalid drop
        iifname { "eth0", "eth1" } tcp dport 80 tcp flags & (fin | syn | rst | ack) == syn ct state new accept
        ip daddr 10.0.0.2 icmp type echo-request accept
        meta pkttype host limit rate 10/second burst 20 packets log prefix "quizstack-drop: " group 1
    }
}
"""


def _run(argv, input=None):
    """(returncode, stdout+stderr); 127 if the program is absent, -1 if it hung."""
    try:
        done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except FileNotFoundError:
        return 127, f"{argv[0]} not found"
    except subprocess.TimeoutExpired:
        return -1, f"{' '.join(argv)} took more than {PROBE_TIMEOUT} s"
    return done.returncode, done.stdout + done.stderr


def read(path) -> str | None:
    """A file's text, or None if it cannot be read."""
    try:
        return Path(path).read_text()
    except OSError:
        return None


class Machine:
    """What the items read, each read once. Nothing here changes the machine: the
    tries run in network namespaces of their own that vanish with their process."""

    @property
    def root(self) -> bool:
        return os.geteuid() == 0

    @cached_property
    def os_release(self) -> str | None:
        return read("/etc/os-release") or read("/usr/lib/os-release")

    @cached_property
    def modules(self) -> str:
        base = Path("/lib/modules") / os.uname().release
        return "\n".join(read(base / f) or "" for f in ("modules.dep", "modules.builtin"))

    @cached_property
    def link_probe(self) -> tuple | None:
        if not self.root:
            return None
        text = "".join(line + "\n" for _, line in LINK_PROBE)
        return _run(["unshare", "--net", "ip", "-force", "-batch", "-"], input=text)

    @cached_property
    def nft_probe(self) -> tuple | None:
        if not self.root:
            return None
        if shutil.which("nft") is None:
            return 127, "nft not found"
        return _run(["unshare", "--net", "nft", "-f", "-"], input=NFT_PROBE)

    def output(self, argv) -> str | None:
        code, output = _run(argv)
        return None if code == 127 else output

    def installed(self, names) -> set:
        code, output = _run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", *names])
        # dpkg-query exits 1 when some names are unknown: its output still says the rest.
        return {line.split()[0] for line in output.splitlines()
                if line.strip().endswith("install ok installed")} if code != 127 else set()

    def port_free(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As the forward binds (lab/forward.py): a port in TIME_WAIT is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    def lab_on_port(self, port: int) -> str | None:
        """The lab whose running forward listens on 127.0.0.1:port, if any."""
        from quizstack.lab import DEFAULT_STATE_ROOT, existing_labs, procs, state

        root = Path(os.environ.get("QUIZSTACK_STATE_ROOT") or DEFAULT_STATE_ROOT)
        for name in existing_labs(root):
            fwd = (state.load(root / name / "state.json") or {}).get("forward") or {}
            ports = [fwd.get("port")] + [p for p, _ in fwd.get("also") or []]
            if port in ports and procs.alive(fwd.get("process")):
                return name
        return None
