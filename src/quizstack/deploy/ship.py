"""QUIZ shipped to app servers that do not share the operator's files.

A namespace lab host runs QUIZ from the operator's own environment (it sees
the machine's files). A real host, or a full-system lab host, gets a
**release**: this project's wheel and the wheels of QUIZ's run-time
dependencies, prepared on the operator's machine (pip, cached; the servers
need no access to PyPI), uploaded to ``/opt/quiz/releases/<id>/wheels`` and
installed into a virtual environment of Debian's Python beside them, with no
index. ``/opt/quiz/current`` points at the release being served; switching
it is what restarts the server. The id is a digest of the project's sources
and the pinned requirements, so a new version is a new release and an
unchanged one changes nothing. The previous release is kept (a way back);
older ones are removed.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.operations.files import link, put

from quizstack.deploy import ops

ROOT = "/opt/quiz"
CURRENT = f"{ROOT}/current"
RELEASES = f"{ROOT}/releases"
KEEP = 2          # the current release and the one before it
CACHED = 4        # releases kept in the operator's cache


@dataclass(frozen=True)
class Release:
    id: str
    wheels: tuple          # local paths: the dependencies', then the project's
    requirements: tuple    # what pip installs from them (pinned), the project last

    @property
    def path(self):
        return f"{RELEASES}/{self.id}"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quizstack" / "releases"


def prepare(progress=None) -> Release:
    """The release of this checkout: its wheel and QUIZ's requirements' wheels.

    Built with pip (once; cached), then copied into a folder of the release's
    own, so that what the deployment uploads stays put while it runs.
    """
    from quizstack import wheels

    say = progress or (lambda message: None)
    dependencies = sorted(wheels.dependency_wheels(say).glob("*.whl"))
    project = wheels.project_wheel(say)
    return assemble(project, dependencies, tuple(wheels.pinned_requirements()))


def assemble(project: Path, dependencies, requirements) -> Release:
    """A release from a project wheel and its dependencies' wheels, kept in the cache."""
    digest = hashlib.sha256()
    for line in requirements:
        digest.update(line.encode() + b"\n")
    digest.update(Path(project).read_bytes())
    release_id = digest.hexdigest()[:12]
    folder = cache_root() / release_id
    wheels = [Path(w) for w in dependencies] + [Path(project)]
    if not (folder / ".complete").exists():
        partial = folder.with_name(f".{release_id}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for wheel in wheels:
            shutil.copy2(wheel, partial / wheel.name)
        (partial / ".complete").write_text("\n".join(requirements) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        old = sorted((p for p in cache_root().iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)[CACHED:]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
    return Release(id=release_id, wheels=tuple(str(folder / w.name) for w in wheels),
                   requirements=tuple(requirements))


def release_for(context) -> Release:
    """The deployment's release: given, or this checkout's, prepared once per deployment."""
    if context.release is not None:
        return context.release
    if "release" not in context.changes:
        context.changes["release"] = prepare()
    return context.changes["release"]


def install_command(release: Release) -> str:
    """The shell command that makes the release's environment from its wheels, offline."""
    venv = f"{release.path}/venv"
    project = Path(release.wheels[-1]).name
    wheels = f"{release.path}/wheels"
    requirements = " ".join(shlex.quote(r) for r in release.requirements)
    return (f"rm -rf {venv} && python3 -m venv {venv} && "
            f"{venv}/bin/pip install -q --no-index --find-links {wheels} {requirements} && "
            f"{venv}/bin/pip install -q --no-index --no-deps {wheels}/{project} && "
            f"touch {release.path}/.complete")


@operation()
def environment(release: Release):
    """The release's environment, made once (a marker says it was made completely)."""
    if host.get_fact(ops.Succeeds, command=f"test -f {release.path}/.complete"):
        return
    yield StringCommand("sh", "-c", QuoteString(install_command(release)))


@operation()
def prune(release: Release):
    """Releases beyond the newest KEEP removed, never the current one."""
    listed = host.get_fact(ops.Lines, command=f"ls -1t {RELEASES} 2>/dev/null || true")
    names = [n.strip() for n in listed if n.strip()]
    current = host.get_fact(ops.Lines, command=f"readlink {CURRENT} || true")
    keep = set(names[:KEEP]) | {release.id}
    keep |= {line.strip().rstrip("/").split("/")[-2] for line in current if "/" in line}
    old = [n for n in names if n not in keep]
    if old:
        yield StringCommand("rm", "-rf", *[f"{RELEASES}/{n}" for n in old])


def add_ops(release: Release):
    """Upload and install the release; returns the operation that switches to it."""
    ops.directory(f"{release.path}/wheels", name="release folder")
    for wheel in release.wheels:
        put(name=f"wheel {Path(wheel).name}", src=wheel,
            dest=f"{release.path}/wheels/{Path(wheel).name}")
    environment(release, name=f"QUIZ release {release.id}")
    switched = link(name="current release", path=CURRENT, target=f"{release.path}/venv")
    prune(release, name="older releases removed")
    return switched
