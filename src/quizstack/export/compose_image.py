"""What QUIZ's image is built from, prepared on the Docker host and cached.

There is no image registry and, inside the Docker daemon's namespace, no
network at all, so everything the build needs is made here first:

- the base image's root file system: mmdebstrap (minbase) with
  compose.BASE_PACKAGES from the Debian mirror this machine's apt is
  configured with, as a tarball for `docker import`;
- QUIZ's run-time dependencies as wheels (`pip wheel` of the exact versions
  this environment runs), and this project as a wheel of its own.

Each lands in the cache (${XDG_CACHE_HOME:-~/.cache}/quizstack/compose),
named by a digest of what went into it, so a second `compose up` builds
nothing of this again; the project's wheel is rebuilt only when its sources
change.
"""

import glob
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import quizstack
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
    if not any(f" {compose.SUITE} " in line for line in lines):
        raise CommandError("compose base image", ["apt sources"], 1,
                           f"no Debian {compose.SUITE} entry in this machine's apt sources")
    return lines


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
    _forget_old("base-*.tar", keep=target)
    return target


# -- wheels ----------------------------------------------------------------------------------


def _name(requirement):
    """A requirement's distribution name, extras and version left out: "psycopg[binary]>=3" → psycopg."""
    return re.split(r"[\[<>=!~;\s]", requirement.strip(), maxsplit=1)[0]


def app_requirements(pyproject):
    """pyproject.toml's dependencies, the deployment's own left out, with their extras."""
    try:
        dependencies = tomllib.loads(Path(pyproject).read_text())["project"]["dependencies"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise CommandError("compose wheels", ["read", str(pyproject)], 1, f"no dependencies ({exc})") from None
    skip = {n.lower() for n in compose.DEPLOYMENT_ONLY}
    return [d for d in dependencies if _name(d).lower() not in skip]


def pinned_requirements(pyproject=None):
    """QUIZ's run-time requirements at the versions this environment runs (what the tests ran)."""
    found = []
    for requirement in app_requirements(pyproject or project_root() / "pyproject.toml"):
        name = _name(requirement)
        extras = re.search(r"\[[^\]]*\]", requirement)
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise CommandError("compose wheels", ["importlib.metadata", name], 1,
                               f"{name} is not installed in {sys.prefix} (run ./setup.sh)") from None
        found.append(f"{name}{extras.group(0) if extras else ''}=={version}")
    return found


def dependency_wheels(progress=lambda _: None):
    """A folder of wheels: the pinned requirements and everything they need."""
    requirements = pinned_requirements()
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    target = cache_dir() / f"wheels-{digest}"
    if target.is_dir() and (target / ".complete").exists():
        return target
    progress(f"wheels: pip wheel {' '.join(requirements)} (once; cached)")
    partial = Path(tempfile.mkdtemp(prefix="partial-wheels-", dir=cache_dir()))
    try:
        _run("compose wheels", [sys.executable, "-m", "pip", "wheel", "-q", "--only-binary", ":all:",
                                "-w", str(partial), *requirements])
        (partial / ".complete").write_text("\n".join(requirements) + "\n")
        if target.exists() and not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)        # a run that died half-way
        try:
            os.rename(partial, target)
        except OSError:
            pass                    # another run put the same wheels there first
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    _forget_old("wheels-*", keep=target)
    return target


def project_root():
    """This project's checkout (where pyproject.toml is), for its wheel."""
    root = Path(quizstack.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").exists():
        raise CommandError("compose image", ["pip", "wheel", "."], 1,
                           f"quizstack at {root} is not a checkout: the image is built from one")
    return root


def _source_digest(root):
    digest = hashlib.sha256()
    files = [root / "pyproject.toml"] + sorted(
        p for p in (root / "src").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p))
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def project_wheel(progress=lambda _: None):
    """This project as a wheel, rebuilt when its sources change.

    Built in a folder of its own and renamed into place whole, so runs side by
    side (two test sessions) never see each other's half-made wheel."""
    root = project_root()
    target = cache_dir() / f"project-{_source_digest(root)}"
    found = sorted(target.glob("quizstack-*.whl")) if target.is_dir() else []
    if found:
        return found[0]
    progress("wheels: this project (pip wheel --no-deps)")
    # Built from a copy: pip builds in the tree it is given (build/, egg-info).
    build = Path(tempfile.mkdtemp(prefix="build-", dir=cache_dir()))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
        shutil.copytree(root / "src", build / "src", ignore=ignore)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, build / name)
        _run("compose image", [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                               "-w", str(build / "out"), str(build)], cwd=build)
        if not list((build / "out").glob("quizstack-*.whl")):
            raise CommandError("compose image", ["pip", "wheel", str(root)], 1, "no wheel was made")
        if target.exists() and not target.is_dir():
            target.unlink()         # left by a run of an older version
        try:
            os.rename(build / "out", target)
        except OSError:
            pass                    # another run put the same wheel there first
    finally:
        shutil.rmtree(build, ignore_errors=True)
    _forget_old("project-*", keep=target)
    return sorted(target.glob("quizstack-*.whl"))[0]


def _forget_old(pattern, keep, age=3600):
    """Cached builds of older inputs, untouched for an hour (none a running build still uses)."""
    for old in cache_dir().glob(pattern):
        try:
            if old != keep and time.time() - old.stat().st_mtime > age:
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink()
        except OSError:
            pass


def stage_wheels(directory, progress=lambda _: None):
    """Copy every wheel the Dockerfile installs into DIR/image/wheels."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    wheels = sorted(dependency_wheels(progress).glob("*.whl")) + [project_wheel(progress)]
    folder = Path(directory) / "image" / "wheels"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for wheel in wheels:
        shutil.copy2(wheel, folder / wheel.name)
    return [w.name for w in wheels]
