"""QUIZ as wheels: its pinned requirements and this project, built once and cached.

A deployment ships them as a release (quizstack.deploy.ship) and the Compose
export bakes them into QUIZ's image (quizstack.export.compose_image): both
install exactly what this environment runs and what the tests ran, on the
host's own Python: the folder holds the wheels for every supported Debian
release's python3 (target_pythons). They land
in ${XDG_CACHE_HOME:-~/.cache}/quizstack/wheels, named by a digest of what
went into them, so a second run builds nothing again; the project's wheel is
rebuilt only when its sources change.
"""

import hashlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import quizstack
from quizstack import debian
from quizstack.errors import CommandError

# pyproject.toml's dependencies that only the deploying machine needs (never the app servers).
DEPLOYMENT_ONLY = ("pyinfra", "bcrypt")
# The manylinux_2_N levels a Debian 12 or newer host's glibc satisfies (2.36 and up).
MANYLINUX_MINORS = tuple(range(36, 4, -1))


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quizstack" / "wheels"


def _run(argv, **kw):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, **kw)
    if done.returncode != 0:
        raise CommandError("wheels", argv, done.returncode, done.stdout + done.stderr)
    return done


def _name(requirement):
    """A requirement's distribution name, extras and version left out: "psycopg[binary]>=3" → psycopg."""
    return re.split(r"[\[<>=!~;\s]", requirement.strip(), maxsplit=1)[0]


def app_requirements(pyproject):
    """pyproject.toml's dependencies, the deployment's own left out, with their extras."""
    try:
        dependencies = tomllib.loads(Path(pyproject).read_text())["project"]["dependencies"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise CommandError("wheels", ["read", str(pyproject)], 1, f"no dependencies ({exc})") from None
    skip = {n.lower() for n in DEPLOYMENT_ONLY}
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
            raise CommandError("wheels", ["importlib.metadata", name], 1,
                               f"{name} is not installed in {sys.prefix} (run ./setup.sh)") from None
        found.append(f"{name}{extras.group(0) if extras else ''}=={version}")
    return found


def target_pythons():
    """The Python versions QUIZ's wheels are made for: this interpreter's and every
    supported Debian release's python3, so one release installs on any of them
    (a Debian 12 machine deploying to Debian 13 hosts, and the reverse)."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    return sorted({here, *(r.python for r in debian.RELEASES.values())},
                  key=lambda v: tuple(int(x) for x in v.split(".")))


def download_argv(python, requirements, dest, machine=None):
    """pip's command that fetches the binary wheels of the requirements for another
    CPython (a version this interpreter is not), for Linux on this machine's processor.

    pip takes an explicit platform list literally, so the manylinux levels that
    Debian 12's glibc (2.36) and newer satisfy are all named."""
    arch = machine or platform.machine()
    tag = python.replace(".", "")
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in MANYLINUX_MINORS] + \
        [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    argv = [sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
            "--python-version", python, "--implementation", "cp", "--abi", f"cp{tag}", "--abi", "abi3",
            "--abi", "none"]
    for name in platforms:
        argv += ["--platform", name]
    return argv + ["-d", str(dest), *requirements]


def installable(filename, python):
    """True if a wheel (by its file name's tags) installs on CPython `python` ("3.11")."""
    stem = Path(filename).name.removesuffix(".whl")
    parts = stem.split("-")
    if len(parts) < 5:
        return False
    pythons, abis = parts[-3].split("."), parts[-2].split(".")
    major, minor = (int(x) for x in python.split("."))
    for tag in pythons:
        if tag in ("py3", f"py{major}{minor}"):
            return True
        if tag.startswith("cp") and tag[2:].isdigit():
            version = (int(tag[2]), int(tag[3:]))
            if version == (major, minor) or ("abi3" in abis and version <= (major, minor)):
                return True
    return False


def for_python(paths, python):
    """The wheels of a folder that install on CPython `python` (one per package)."""
    return [p for p in paths if installable(p, python)]


def dependency_wheels(progress=lambda _: None):
    """A folder of wheels: the pinned requirements and everything they need, for
    each of target_pythons() (pip installs, offline, the ones that fit)."""
    requirements = pinned_requirements()
    pythons = target_pythons()
    digest = hashlib.sha256("\n".join(requirements + [f"python {v}" for v in pythons])
                            .encode()).hexdigest()[:12]
    target = cache_dir() / f"wheels-{digest}"
    if target.is_dir() and (target / ".complete").exists():
        return target
    progress(f"wheels: {' '.join(requirements)} for Python {', '.join(pythons)} (once; cached)")
    cache_dir().mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="partial-wheels-", dir=cache_dir()))
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--only-binary", ":all:",
                                "-w", str(partial), *requirements])
        for python in pythons:
            if python != here:
                _run(download_argv(python, requirements, partial))
        (partial / ".complete").write_text("\n".join(requirements) + "\n")
        if target.exists() and not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)        # a run that died half-way
        try:
            os.rename(partial, target)
        except OSError:
            pass                    # another run put the same wheels there first
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    forget_old(cache_dir(), "wheels-*", keep=target)
    return target


def project_root():
    """This project's checkout (where pyproject.toml is), for its wheel."""
    root = Path(quizstack.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").exists():
        raise CommandError("wheels", ["pip", "wheel", "."], 1,
                           f"quizstack at {root} is not a checkout: its wheel is built from one")
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
    cache_dir().mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix="build-", dir=cache_dir()))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
        shutil.copytree(root / "src", build / "src", ignore=ignore)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, build / name)
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                               "-w", str(build / "out"), str(build)], cwd=build)
        if not list((build / "out").glob("quizstack-*.whl")):
            raise CommandError("wheels", ["pip", "wheel", str(root)], 1, "no wheel was made")
        if target.exists() and not target.is_dir():
            target.unlink()         # left by a run of an older version
        try:
            os.rename(build / "out", target)
        except OSError:
            pass                    # another run put the same wheel there first
    finally:
        shutil.rmtree(build, ignore_errors=True)
    forget_old(cache_dir(), "project-*", keep=target)
    return sorted(target.glob("quizstack-*.whl"))[0]


def forget_old(folder, pattern, keep, age=3600):
    """Remove FOLDER's cached builds of older inputs, untouched for an hour (none a running build still uses)."""
    for old in Path(folder).glob(pattern):
        try:
            if old != keep and time.time() - old.stat().st_mtime > age:
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink()
        except OSError:
            pass
