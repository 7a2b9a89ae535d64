"""What QUIZ's image is built from, prepared on the Docker host and cached.

There is no image registry and, inside the Docker daemon's namespace, no
network at all, so everything the build needs is made here first:

- the base image's root file system: mmdebstrap (minbase) with
  compose.BASE_PACKAGES from the Debian mirror this machine's apt is
  configured with, as a tarball for `docker import`;
- QUIZ's run-time dependencies and this project as wheels (quizstack.wheels,
  shared with the deployment's releases), copied into the build context.

The root file system lands in the cache (${XDG_CACHE_HOME:-~/.cache}/quizstack/compose),
named by a digest of what went into it, so a second `compose up` builds
nothing of this again.
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from quizstack import debian, wheels as wheels_
from quizstack.errors import CommandError
from quizstack.export import compose

SOURCES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d")
# The root file system's clean-up: Debian's postgresql package makes a cluster
# the containers never use (the database container makes its own in a volume).
CUSTOMIZE = ('rm -rf "$1"/var/lib/postgresql/*/main "$1"/etc/postgresql/*/main '
             '"$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*')


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quizstack" / "compose"


def _run(where, argv, timeout=1800, **kw):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if done.returncode != 0:
        raise CommandError(where, argv, done.returncode, done.stdout + done.stderr)
    return done


# -- the mirror ------------------------------------------------------------------------


def parse_sources(texts, suite=compose.SUITE):
    """One-line `deb URI SUITE COMPONENTS` entries for `suite` and its updates and security
    suites, from sources.list lines and deb822 .sources stanzas (other suites are skipped)."""
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    found = []

    def add(uri, suites, components):
        for s in suites:
            line = f"deb {uri} {s} {' '.join(components) or 'main'}"
            if s in wanted and line not in found:
                found.append(line)

    for text in texts:
        stanza = {}
        lines = text.splitlines() + [""]
        for raw in lines:
            if raw.lstrip().startswith("#"):
                continue            # a comment, not the blank line that ends a stanza
            line = raw.split("#", 1)[0].rstrip()
            if line.startswith("deb "):
                parts = line.split()[1:]
                if parts and parts[0].startswith("["):
                    while parts and not parts[0].endswith("]"):
                        parts.pop(0)
                    parts.pop(0)
                if len(parts) >= 2:
                    add(parts[0], [parts[1]], parts[2:])
                continue
            if not line.strip():
                if "deb" in stanza.get("types", "").split() and stanza.get("enabled", "yes") != "no":
                    for uri in stanza.get("uris", "").split():
                        add(uri, stanza.get("suites", "").split(), stanza.get("components", "").split())
                stanza = {}
                continue
            if ":" in line and not line[0].isspace():
                key, _, value = line.partition(":")
                stanza[key.strip().lower()] = value.strip()
    return found


def mirror_lines():
    texts = []
    for source in SOURCES:
        paths = sorted(glob.glob(os.path.join(source, "*.list")) + glob.glob(os.path.join(source, "*.sources"))) \
            if os.path.isdir(source) else [source]
        for path in paths:
            try:
                texts.append(Path(path).read_text())
            except OSError:
                pass
    lines = parse_sources(texts)
    if any(f" {compose.SUITE} " in line for line in lines):
        return lines
    # A machine of another release (Debian 13): the same mirrors, for the image's release.
    mirrors = [line.split()[1] for suite in debian.RELEASES for line in parse_sources(texts, suite)]
    mirrors = [m for m in dict.fromkeys(mirrors) if m.startswith("http://")]
    try:
        return debian.archive_lines(compose.SUITE, mirrors)
    except debian.ReleaseError:
        raise CommandError("compose base image", ["apt sources"], 1,
                           "no Debian mirror over http:// in this machine's apt sources") from None


# -- the base root file system ------------------------------------------------------------


def base_rootfs(progress=lambda _: None):
    """The base root file system as a tarball, made once by mmdebstrap and cached."""
    tag = compose.base_tag().split(":")[1]
    target = cache_dir() / f"base-{tag}.tar"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(f"base image: mmdebstrap {compose.SUITE} with {', '.join(compose.BASE_PACKAGES)} "
             "(once; cached)")
    fd, partial = tempfile.mkstemp(prefix="partial-base-", suffix=".tar", dir=target.parent)
    os.close(fd)
    partial = Path(partial)
    try:
        _run("compose base image", [
            "mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(compose.BASE_PACKAGES)}",
            f"--customize-hook={CUSTOMIZE}", "--format=tar", compose.SUITE, str(partial),
            *mirror_lines()])
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    wheels_.forget_old(cache_dir(), "base-*.tar", keep=target)
    return target


# -- wheels ----------------------------------------------------------------------------------


def stage_wheels(directory, progress=lambda _: None):
    """Copy every wheel the Dockerfile installs (quizstack.wheels) into DIR/image/wheels:
    those for the image's own python3 (the wheels are made for every supported one)."""
    python = debian.release(compose.SUITE).python
    wheels = wheels_.for_python(sorted(wheels_.dependency_wheels(progress).glob("*.whl")), python) \
        + [wheels_.project_wheel(progress)]
    folder = Path(directory) / "image" / "wheels"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for wheel in wheels:
        shutil.copy2(wheel, folder / wheel.name)
    return [w.name for w in wheels]
