"""A fresh Debian machine (12 or 13) as a systemd-nspawn container, for running quizstack itself on it.

The README promises `./setup.sh && .venv/bin/quizstack up` on a fresh Debian
machine, as root, from a clone of the repository. These helpers make such a
machine per release and keep it: the *base* is what a fresh Debian server has
(mmdebstrap's `important` variant: the required and important packages, what
the installer lays down before its optional tasks) plus git and
ca-certificates, from the machine's own Debian mirror with the release's
suites (RELEASE, RELEASE-updates, RELEASE-security); the *prepared* root is
the base with a copy of the checkout at /root/quizstack and `./setup.sh` run
in it once (the Debian packages and the .venv, the slow part). Both are cached
under ``${XDG_CACHE_HOME:-~/.cache}/quizstack/machines/<release>/`` (``root/``
with ``base.json`` and ``prepared.json`` beside it, each carrying FORMAT),
built under a lock and renamed into place, so a second run only syncs the
checkout and runs the README's commands: setup.sh then installs only what is
new. Delete the folder to start from scratch.

The checkout copied in is the working tree as it is: every tracked file and
every untracked one git does not ignore (what `git add -A` would commit), with
deleted files left out; files in the copy that are neither in that list nor
ignored are removed, ignored ones (.venv, __pycache__, build output) are kept.
Nothing in quizstack reads git, so the copy carries no .git.

How the container is run, and why each flag is there (systemd 252's nspawn):

- ``SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1``: the container sees the cgroup v2
  layout only, as a stock Debian 12 or 13 machine does (this machine is
  hybrid). No controller is delegated, so cgroup.freeze and cgroup.kill work
  and cpu.max does not.
- ``SYSTEMD_NSPAWN_API_VFS_WRITABLE=network``: /proc/sys/net writable (the
  rest of /proc/sys and /sys stay read-only). The lab writes sysctls inside
  its own network namespaces through the container's /proc (bridge sysctls
  in the lab's netns, ping_group_range in each host's); without it they fail
  with "Read-only file system". (The container shares the machine's network
  namespace, so it could write the machine's too; the lab does not.)
- ``--register=no --keep-unit``: there is no systemd as PID 1 (nor machined)
  here to register a machine or make a scope with.
- ``--capability=all``: root on a real machine has every capability; the lab
  needs CAP_NET_ADMIN (veths, bridges, nftables) beyond nspawn's default set,
  and nothing smaller is what a user runs quizstack with.
- ``--bind=/dev/fuse``: nspawn's /dev has no fuse; the app servers mount the
  GlusterFS volume with the FUSE client.
- ``--as-pid2``: nspawn's stub init is PID 1, as a machine has an init: it
  reaps the orphans the lab leaves to PID 1 (the hosts' inits and the
  loopback forward outlive the commands that start them) and ends the
  container when our command loop (PID 2) ends. The loop is no init.
- ``--console=pipe``: the container's stdin and stdout are the pipes of this
  module (the step protocol below); the container ends when stdin closes,
  so a test that dies takes its container with it.
- No ``--private-network``: the container shares the machine's network, so
  apt reaches the machine's mirror, pip PyPI, and the test reaches the
  service's loopback port from outside, as a user's browser would. With the
  network shared, nspawn's default ``--resolv-conf=auto`` copies the
  machine's /etc/resolv.conf in: no flag for it.
- A cgroup of its own, quizstack-platforms-<release> in the machine's v2
  hierarchy (nspawn splits it into supervisor/ and payload/, and mirrors that
  in the v1 name=systemd hierarchy): the container's cgroup namespace is
  rooted there, so the lab inside sees a v2 tree of its own, as on a machine
  of its own, not the cgroups of labs run on this machine meanwhile. Removed
  when the container ends.
- Not needed: writable /sys, a booted init (see below), a private /tmp (nspawn's default tmpfs is fine),
  anything for overlayfs (the root is a directory on the machine's ext4, so
  /srv/quizstack, where the lab keeps its upper layers, is a real filesystem).

pip inside needs the machine's own trust and settings: the certificate
authorities the machine added to its bundle (those in
/etc/ssl/certs/ca-certificates.crt that are not Debian's own) are copied to
/usr/local/share/ca-certificates/quizstack-machine/ and installed with
update-ca-certificates; /etc/pip.conf and /etc/xdg/pip/ are copied; the PIP_*,
SSL_CERT_*, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and proxy variables are passed,
except paths that do not exist in the container (the machine's local
find-links). root's own pip.conf (~/.config/pip) is not copied: it names
directories of this machine.

No init boots in the container, so the first step does to /run what a
booted Debian's does before anyone logs in (BOOTED_RUN: /run/lock, which
`quizstack doctor` requires, and systemd-tmpfiles' boot entries); the root
gets a machine-id once, as a first boot would give it. A lab's state left in
the root by a killed run (/srv/quizstack) is removed before the container
starts: its processes and namespaces died with that container.

Steps run inside through one shell reading commands on the container's stdin:
each is `bash -lc CMD` with stdin from /dev/null, its output followed by an
end marker with its exit status. Every step has a timeout; on one, the
container is stopped through its nspawn process (ours, by PID; see kill).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from quizstack import debian
from quizstack.errors import LabError
from quizstack.lab import cgroups, sysimage

RELEASES = ("bookworm", "trixie")
FORMAT = 1                    # bump when the base or the preparation changes shape
VARIANT = "important"
PACKAGES = ("git", "ca-certificates")
CHECKOUT = "/root/quizstack"
REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 900
FIRST_SETUP_TIMEOUT = 2400    # every Debian package of setup.sh, the .venv
GIT_TIMEOUT = 60
BOOT_TIMEOUT = 60
EXIT_TIMEOUT = 60
TAIL = 40
CA_DIR = "usr/local/share/ca-certificates/quizstack-machine"
PIP_FILES = ("etc/pip.conf", "etc/xdg/pip")
PASSED_ENV = re.compile(r"^(PIP_\w+|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE"
                        r"|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)$")
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
# Debian 12's PID 1 mounts /run/lock (1777) itself, Debian 13's tmpfiles make it;
# systemd-user-sessions removes /run/nologin once booted, so it is never made here.
BOOTED_RUN = ("mkdir -p -m 1777 /run/lock && "
              "systemd-tmpfiles --create --boot --exclude-prefix=/dev --exclude-prefix=/run/nologin")
NSPAWN_ENV = {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1", "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}


class StepFailed(AssertionError):
    """A step on the way failed: its name, how, and the last lines it printed."""

    def __init__(self, release: str, step: str, how: str, lines=()):
        tail = "\n".join(list(lines)[-TAIL:])
        super().__init__((f"Debian {release}: " if release else "") + f"step {step!r} {how}"
                         + (f"; last lines:\n{tail}" if tail else ""))
        self.step = step


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quizstack" / "machines"


def _say(progress, message):
    progress(f"machine: {message}")


# -- the base: a fresh Debian server --------------------------------------------------------------

def _marker(path: Path) -> dict | None:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if found.get("format") == FORMAT else None


def _build_base(release: str, home: Path, progress) -> None:
    """mmdebstrap the release into a fresh folder, then rename it to `home`."""
    mirror = sysimage.debian_mirror()
    lines = debian.archive_lines(release, sysimage.machine_mirrors())
    work = home.parent / f".{release}.building-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _say(progress, f"building Debian {release} with mmdebstrap from {mirror} "
                   f"({VARIANT} + {', '.join(PACKAGES)}; once, about 30 s)")
    started = time.monotonic()
    argv = ["mmdebstrap", "--quiet", f"--variant={VARIANT}", "--include=" + ",".join(PACKAGES),
            release, str(work / "root"), *lines]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        shutil.rmtree(work, ignore_errors=True)
        raise StepFailed(release, "mmdebstrap", f"took more than {BUILD_TIMEOUT} s") from None
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise StepFailed(release, "mmdebstrap", f"failed (exit {done.returncode})",
                         (done.stderr + done.stdout).splitlines())
    (work / "base.json").write_text(json.dumps(
        {"format": FORMAT, "release": release, "mirror": mirror, "sources": lines,
         "variant": VARIANT, "packages": list(PACKAGES), "built": time.strftime("%F %T")}) + "\n")
    if home.exists():
        old = home.parent / f".{release}.old-{os.getpid()}"
        home.rename(old)
        shutil.rmtree(old)
    work.rename(home)
    _say(progress, f"Debian {release} base ready in {time.monotonic() - started:.0f} s ({home})")


# -- what the container takes from the machine ---------------------------------------------------

def machine_authorities(bundle="/etc/ssl/certs/ca-certificates.crt",
                        debian_dir="/usr/share/ca-certificates") -> list[str]:
    """The certificate authorities this machine added to Debian's (PEM blocks, in bundle order)."""
    try:
        trusted = PEM.findall(Path(bundle).read_text())
    except OSError:
        return []
    own = set()
    for path in Path(debian_dir).rglob("*.crt"):
        own.update(PEM.findall(path.read_text(errors="replace")))
    return [block for block in dict.fromkeys(trusted) if block not in own]


def _sync_trust(root: Path) -> bool:
    """The machine's extra authorities and pip settings into the root; True if the
    authorities changed (update-ca-certificates must run inside)."""
    changed = False
    wanted = {f"{i:02d}.crt": block + "\n" for i, block in enumerate(machine_authorities())}
    folder = root / CA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.name not in wanted:
            old.unlink()
            changed = True
    for name, text in wanted.items():
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed = True
    for rel in PIP_FILES:                 # neither is Debian's: the machine's copy, or none
        source, target = Path("/") / rel, root / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif os.path.lexists(target):
            target.unlink()
        if source.is_dir():
            shutil.copytree(source, target)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return changed


def passed_env(root: Path, environ=None) -> dict[str, str]:
    """The machine's pip, TLS and proxy variables the container gets: a path that
    does not exist in the container (e.g. a find-links of this machine) is left out."""
    found = {}
    for name, value in (os.environ if environ is None else environ).items():
        if not PASSED_ENV.match(name):
            continue
        words = value.split()
        kept = [w for w in words if not w.startswith("/") or (root / w.lstrip("/")).exists()]
        if kept or not words:
            found[name] = " ".join(kept)
    return found


# -- the checkout --------------------------------------------------------------------------------

def _git(*args, input=None) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], input=input, capture_output=True,
                          text=True, timeout=GIT_TIMEOUT)
    if done.returncode not in (0, 1):   # check-ignore: 1 = nothing ignored
        raise StepFailed("", "sync checkout", f"git {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def tree_files() -> list[str]:
    """The working tree as it is: tracked and untracked-but-not-ignored files that exist."""
    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    return sorted({f for f in listed if f and os.path.lexists(REPO / f)})


def sync_checkout(root: Path) -> dict:
    """Make <root>/root/quizstack the working tree; ignored files there (.venv, caches) stay."""
    target = root / CHECKOUT.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    files = tree_files()
    copied = 0
    for rel in files:
        source, dest = REPO / rel, target / rel
        if source.is_symlink():
            link = os.readlink(source)
            if not (dest.is_symlink() and os.readlink(dest) == link):
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                elif os.path.lexists(dest):
                    dest.unlink()
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(link, dest)
                copied += 1
            continue
        s = source.stat()
        try:
            d = dest.lstat()
            same = (not dest.is_symlink() and d.st_size == s.st_size
                    and d.st_mtime_ns == s.st_mtime_ns and d.st_mode == s.st_mode)
        except FileNotFoundError:
            same = False
        if not same:
            if dest.is_symlink():
                dest.unlink()
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
            copied += 1
    # What is there but no longer in the tree goes, unless git ignores it.
    wanted = set(files)
    extra = []
    for folder, dirs, names in os.walk(target):
        rel_dir = os.path.relpath(folder, target)
        if rel_dir == ".":
            dirs[:] = [d for d in dirs if d not in (".venv", ".git")]
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel not in wanted:
                extra.append(rel)
    ignored = set(_git("check-ignore", "--no-index", "-z", "--stdin",
                       input="\0".join(extra) + "\0").split("\0")) if extra else set()
    removed = [rel for rel in extra if rel not in ignored]
    for rel in removed:
        (target / rel).unlink()
        parent = (target / rel).parent
        while parent != target and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    return {"files": len(files), "copied": copied, "removed": len(removed)}


# -- the container -------------------------------------------------------------------------------

class Container:
    """A running container of a prepared root; `run` executes one step inside."""

    def __init__(self, root: Path, release: str, progress=print):
        self.root, self.release, self.progress = root, release, progress
        self.mark = f"@@quizstack-step-end-{secrets.token_hex(6)}"
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.returncode: int | None = None
        self.killed = False
        self.cgroup: str | None = None

    def argv(self) -> list[str]:
        env = passed_env(self.root)
        leader = (f'while IFS= read -r step; do (cd /root && /bin/bash -lc "$step") </dev/null 2>&1; '
                  f'printf "\\n%s %s\\n" {shlex.quote(self.mark)} "$?"; done')
        return (["systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
                 f"--directory={self.root}", "--capability=all", "--bind=/dev/fuse",
                 "--as-pid2", "--console=pipe"]
                + [f"--setenv={k}={v}" for k, v in sorted(env.items())]
                + ["--", "/bin/bash", "-c", leader])

    def __enter__(self):
        argv = self.argv()
        layout = cgroups.detect()
        if layout.v2:
            # The container's cgroup namespace is rooted where nspawn starts: a cgroup
            # of its own, so it sees its own tree only, not the machine's other labs.
            self.cgroup = f"{layout.v2}/quizstack-platforms-{self.release}"
            os.makedirs(self.cgroup, exist_ok=True)
            argv = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.cgroup] + argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env={**os.environ, **NSPAWN_ENV})
        threading.Thread(target=self._read, daemon=True).start()
        _say(self.progress, f"Debian {self.release} container started (systemd-nspawn pid {self.proc.pid})")
        # No init sets /run up here: do what a booted Debian's does before anyone
        # logs in (the lab's hosts overlay this /run; quizstack doctor wants /run/lock).
        try:
            self.run("boot", BOOTED_RUN, timeout=BOOT_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def run(self, step: str, argv, timeout: float, cwd: str | None = None, quiet=False) -> str:
        """One command inside (argv list, or a shell line), its output; StepFailed unless it exits 0."""
        command = argv if isinstance(argv, str) else shlex.join(argv)
        if cwd:
            command = f"cd {shlex.quote(cwd)} && {command}"
        if self.proc is None or self.proc.poll() is not None:
            raise StepFailed(self.release, step, "cannot run: the container is not running")
        started = time.monotonic()
        out: list[str] = []
        blank = False
        try:
            self.proc.stdin.write((command.replace("\n", " ") + "\n").encode())
            self.proc.stdin.flush()
        except OSError as exc:
            raise StepFailed(self.release, step, f"cannot be sent to the container: {exc}") from None
        while True:
            left = started + timeout - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                self.kill()
                raise StepFailed(self.release, step, f"timed out after {timeout:.0f} s "
                                 "(container killed)", out) from None
            if line is None:
                self.lines.put(None)
                raise StepFailed(self.release, step, "ended with the container "
                                 f"(exit {self.proc.wait()})", out)
            if line.startswith(self.mark):
                status = int(line.split()[-1])
                break
            if blank:                  # held back: it may be the one printed before the marker
                out.append("")
                if not quiet:
                    self.progress(f"  [{self.release} {step}]")
            blank = line == ""
            if not blank:
                out.append(line)
                if not quiet:
                    self.progress(f"  [{self.release} {step}] {line}")
        if status != 0:
            raise StepFailed(self.release, step,
                             f"failed (exit {status}) after {time.monotonic() - started:.0f} s", out)
        return "\n".join(out)

    def kill(self):
        """End a hung container: SIGTERM to its nspawn process (ours, by PID), which
        then kills the container; should nspawn not go, SIGKILL to the container's
        init (nspawn's child) and to nspawn. (A SIGKILLed nspawn alone leaves the
        container running.)"""
        if self.proc and self.proc.poll() is None:
            _say(self.progress, f"stopping the container: SIGTERM to systemd-nspawn pid {self.proc.pid}")
            self.killed = True
            init = self.init_pid()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                for pid in (init, self.proc.pid):
                    if pid:
                        _say(self.progress, f"SIGKILL to pid {pid}")
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
        if self.proc:
            self.returncode = self.proc.wait(timeout=EXIT_TIMEOUT)

    def init_pid(self) -> int | None:
        """The container's PID 1 as the machine sees it: nspawn's child."""
        try:
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                children = (task / "children").read_text().split()
                if children:
                    return int(children[0])
        except (OSError, ValueError):
            pass
        return None

    def stop(self) -> int:
        """Close the container's stdin: its shell ends, so does the container. Killed if it hangs."""
        if self.proc is None:
            return -1
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.returncode = self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
        return self.returncode

    def __exit__(self, *exc):
        self.stop()
        self.remove_cgroup()
        return False

    def remove_cgroup(self):
        """The container's cgroups, deepest first, with whatever a lab left below:
        the v2 one and the copy nspawn makes in the v1 name=systemd hierarchy
        (supervisor/ for itself, payload/ for the container). Their processes are
        gone with the container."""
        if not self.cgroup:
            return
        for top in cgroups.detect().named(os.path.basename(self.cgroup)):
            for folder, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                try:
                    cgroups.remove(folder)
                except LabError as exc:
                    _say(self.progress, f"left behind: {exc}")


# -- the whole machine ---------------------------------------------------------------------------

@contextlib.contextmanager
def machine(release: str, progress=print):
    """The release's prepared root (built and prepared first if needed), held under its
    lock while the caller uses it; yields (root, seconds spent preparing)."""
    started = time.monotonic()
    home = cache_dir() / release
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{release}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(progress, f"Debian {release}: waiting for another run to release {home}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        for left in home.parent.glob(f".{release}.*-*"):    # a build or a swap a crash cut short
            shutil.rmtree(left, ignore_errors=True)
        if _marker(home / "base.json") is None:
            _build_base(release, home, progress)
        root = home / "root"
        if _marker(home / "prepared.json") is None:
            _prepare(root, release, progress)
            (home / "prepared.json").write_text(json.dumps(
                {"format": FORMAT, "release": release, "prepared": time.strftime("%F %T")}) + "\n")
        yield root, time.monotonic() - started


def _prepare(root: Path, release: str, progress):
    _say(progress, f"preparing Debian {release}: the checkout at {CHECKOUT} and ./setup.sh "
                   "(once; several minutes)")
    with boot(root, release, progress) as box:
        box.run("setup.sh (preparing)", ["./setup.sh"], cwd=CHECKOUT, timeout=FIRST_SETUP_TIMEOUT)


@contextlib.contextmanager
def boot(root: Path, release: str, progress=print):
    """A container of the root with the current checkout, the machine's trust and pip
    settings, and no lab state left from an earlier run (the caller holds the lock)."""
    counts = sync_checkout(root)
    _say(progress, f"checkout synced into {CHECKOUT}: {counts['files']} files, "
                   f"{counts['copied']} copied, {counts['removed']} removed")
    trust_changed = _sync_trust(root)
    # No container runs this root (we hold its lock): a lab recorded there is a
    # killed run's, whose processes and namespaces died with its container.
    shutil.rmtree(root / "srv/quizstack", ignore_errors=True)
    # A machine's identity, made once as its first boot would (mmdebstrap leaves none).
    machine_id = root / "etc/machine-id"
    if not re.fullmatch(r"[0-9a-f]{32}\n?", machine_id.read_text() if machine_id.exists() else ""):
        machine_id.write_text(secrets.token_hex(16) + "\n")
    with Container(root, release, progress) as box:
        if trust_changed:
            box.run("update-ca-certificates", ["update-ca-certificates"], timeout=120)
        yield box


if __name__ == "__main__":      # prepare a release by hand: python tests/platforms/machine.py trixie
    for name in sys.argv[1:] or RELEASES:
        with machine(name) as (where, took):
            print(f"{name}: {where} ({took:.0f} s)")
