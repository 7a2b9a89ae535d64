"""The base of full-system lab hosts: a minimal Debian root filesystem, built once.

A full-system host (scenario `kind = "system"`) boots a whole Debian with
systemd as its init, on a copy-on-write layer over this base. The base is
built with mmdebstrap from the machine's own configured Debian mirror and
cached under ``$XDG_CACHE_HOME/quizstack/system-base/<key>``; the key is a
hash of everything that shapes it (release, mirror, packages, the files written
into it), so changing the package list builds a new base beside the old one (which
stays until removed by hand: it is only a cache). There is one base per Debian
release a scenario asks for (`release = "bookworm" | "trixie"`): whatever
release the machine itself runs, the base's apt sources name the host's own
release on the machine's mirrors (debian.archive_lines).

What the base holds beyond Debian's: apt going through the lab's door (a
proxy on 127.0.0.1:3142 that systemd forwards to the lab's socket; see
aptproxy.py), no per-machine identity (no host keys, no machine-id, no
hostname: the lab writes each host's own), and no timers that would reach
for the network.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from quizstack import debian
from quizstack.errors import LabError

# What every full-system host starts with: an init, sshd for the deployment,
# Python for the roles' small probes, and the tools `check` and the roles use.
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
    "iputils-ping", "ca-certificates", "curl", "sudo", "procps", "less", "netcat-openbsd",
    "netbase",
)
DOOR_DIR = "/run/quizstack-door"        # where a host sees the lab's door (bind, read-only)
DOOR_SOCKET = "apt.sock"
PROXY_PORT = 3142
BUILD_TIMEOUT = 900
FORMAT = 1                               # bump when the files below change shape

UNITS = {
    "quizstack-apt-proxy.socket": f"""\
[Unit]
Description=Debian's packages through the lab's door (written by quizstack)

[Socket]
ListenStream=127.0.0.1:{PROXY_PORT}

[Install]
WantedBy=sockets.target
""",
    "quizstack-apt-proxy.service": f"""\
[Unit]
Description=Forward apt's proxy connections to the lab's door (written by quizstack)
Requires=quizstack-apt-proxy.socket
After=quizstack-apt-proxy.socket

[Service]
ExecStart=/lib/systemd/systemd-socket-proxyd {DOOR_DIR}/{DOOR_SOCKET}
PrivateTmp=yes
NoNewPrivileges=yes
""",
}
APT_CONF = f"""\
// Written by quizstack: a lab host reaches Debian's mirror only through the lab's door.
Acquire::http::Proxy "http://127.0.0.1:{PROXY_PORT}/";
Acquire::http::Pipeline-Depth "0";
Acquire::Languages "none";
APT::Install-Recommends "false";
"""
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
          "fstrim.timer", "systemd-timesyncd.service", "getty@tty1.service",
          "console-getty.service", "systemd-networkd-wait-online.service")


def machine_mirrors(sources_dir="/etc/apt") -> list[str]:
    """The http URIs of the machine's configured Debian sources (deb822 or one-line)."""
    uris: list[str] = []
    root = Path(sources_dir)
    files = [root / "sources.list"] + sorted((root / "sources.list.d").glob("*"))
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if path.suffix == ".sources" and line.startswith("URIs:"):
                uris += line.split()[1:]
            elif line.startswith("deb ") or line.startswith("deb\t"):
                words = [w for w in line.split()[1:] if not w.startswith("[")]
                if words:
                    uris.append(words[0])
    return [u.rstrip("/") for u in dict.fromkeys(uris) if u.startswith("http://")]


def debian_mirror(sources_dir="/etc/apt") -> str:
    """The machine's mirror of Debian itself (not its security archive)."""
    mirrors = machine_mirrors(sources_dir)
    plain = [m for m in mirrors if not m.endswith("-security")]
    if not plain:
        raise LabError("full-system hosts need a Debian mirror over http:// in the machine's "
                       "apt sources (/etc/apt/sources.list or sources.list.d); none found")
    return plain[0]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quizstack" / "system-base"


def base_key(mirror: str, packages=PACKAGES, sources=None, suite=debian.DEFAULT) -> str:
    shape = {"suite": suite, "mirror": mirror, "packages": sorted(packages), "format": FORMAT,
             "sources": sources or [],
             "units": UNITS, "apt": APT_CONF, "masked": MASKED}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def _customize(root: Path, mirror: str, sources: list[str], suite: str):
    """Make a freshly built tree the lab's base (pure file work on `root`)."""
    # The machine's mirrors, for the host's own release (updates and security
    # included), so a package installed on a host is the release's current one.
    for old in (root / "etc/apt/sources.list.d").glob("*"):
        old.unlink()
    (root / "etc/apt/sources.list").write_text(
        "# Written by quizstack: the machine's mirrors, reached through the lab's door.\n"
        + "".join(line + "\n" for line in sources))
    (root / "etc/apt/apt.conf.d/80quizstack").write_text(APT_CONF)
    units = root / "etc/systemd/system"
    for name, text in UNITS.items():
        (units / name).write_text(text)
    wants = units / "sockets.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "quizstack-apt-proxy.socket"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/quizstack-apt-proxy.socket")
    for unit in MASKED:
        target = units / unit
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to("/dev/null")
    # No identity in the base: each host gets its own from the lab.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    for name in ("etc/hostname", "var/lib/dbus/machine-id"):
        path = root / name
        if path.exists() or path.is_symlink():
            path.unlink()
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("# no name servers in the lab: names are in /etc/hosts\n")
    sshd = root / "etc/ssh/sshd_config.d"
    sshd.mkdir(parents=True, exist_ok=True)
    (sshd / "00-quizstack-lab.conf").write_text(
        "# Written by quizstack: keys only, as on every host of the lab.\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n")
    (root / "etc/quizstack-base").write_text(json.dumps({"suite": suite, "mirror": mirror,
                                                          "packages": sorted(PACKAGES)}) + "\n")


def ensure_base(progress=None, mirror: str | None = None, release: str = debian.DEFAULT) -> Path:
    """The cached base of a Debian release: its root directory, built first if
    missing (about 20 s for bookworm, 30 s for trixie)."""
    progress = progress or (lambda message: None)
    suite = debian.release(release).codename
    mirror = mirror or debian_mirror()
    try:
        sources = debian.archive_lines(suite, machine_mirrors())
    except debian.ReleaseError as exc:
        raise LabError(f"full-system hosts: {exc}") from None
    key = base_key(mirror, sources=sources, suite=suite)
    home = cache_root()
    home.mkdir(parents=True, exist_ok=True)
    final = home / key
    if (final / "root" / "etc/quizstack-base").exists():
        return final / "root"
    if shutil.which("mmdebstrap") is None:
        raise LabError("full-system hosts need mmdebstrap (apt-get install mmdebstrap; "
                       "setup.sh installs it)")
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "root" / "etc/quizstack-base").exists():
            return final / "root"
        work = home / f".{key}.building-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        progress(f"system base: building {debian.release(suite).name} with mmdebstrap "
                 f"from {mirror} (once; about 30 s)")
        started = time.monotonic()
        argv = ["mmdebstrap", "--quiet", "--variant=apt", "--include=" + ",".join(PACKAGES),
                suite, str(work / "root"), *sources]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            shutil.rmtree(work, ignore_errors=True)
            raise LabError(f"system base: mmdebstrap took more than {BUILD_TIMEOUT} s") from None
        if done.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise LabError(f"system base: mmdebstrap failed: {tail}")
        _customize(work / "root", mirror, sources, suite)
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        progress(f"system base: ready in {time.monotonic() - started:.0f} s ({final.name})")
    return final / "root"
