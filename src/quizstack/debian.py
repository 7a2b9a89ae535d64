"""The Debian releases quizstack runs on and deploys to, and the facts that differ between them.

quizstack supports Debian 12 (bookworm) and Debian 13 (trixie), for the
machine it runs on and for the hosts it configures. Roles never assume one:
they read the host's facts (its packages, its layout) and choose; what is
known ahead of time about each release lives here, once — its number, the
Python its `python3` is (QUIZ's releases carry wheels for each, so a Debian 12
machine can deploy to Debian 13 hosts and the reverse), and how its archive
is laid out on a mirror. Pure, but for `machine_release`, which reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass

from quizstack.errors import QuizstackError


@dataclass(frozen=True)
class Release:
    codename: str
    number: str
    python: str          # the version of its python3 ("3.11")

    @property
    def name(self) -> str:
        return f"Debian {self.number} ({self.codename})"


RELEASES = {r.codename: r for r in (
    Release("bookworm", "12", "3.11"),
    Release("trixie", "13", "3.13"),
)}
DEFAULT = "bookworm"


class ReleaseError(QuizstackError):
    """A Debian release quizstack does not support, or a machine it cannot read."""


def release(codename: str) -> Release:
    """The release of this codename; a clear error naming the supported ones otherwise."""
    try:
        return RELEASES[codename]
    except (KeyError, TypeError):
        raise ReleaseError(f"Debian release {codename!r} is not supported "
                           f"(supported: {', '.join(RELEASES)})") from None


def parse_os_release(text: str) -> dict[str, str]:
    """/etc/os-release as a dict (quotes removed)."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            found[key] = value.strip().strip("\"'")
    return found


def codename_of(os_release: dict[str, str]) -> str | None:
    """The Debian codename an os-release names (None if it is not Debian)."""
    if os_release.get("ID") != "debian" and "debian" not in os_release.get("ID_LIKE", "").split():
        return None
    return os_release.get("VERSION_CODENAME") or None


def machine_release(path: str = "/etc/os-release") -> str | None:
    """This machine's Debian codename, or None if it is not Debian (or unreadable)."""
    try:
        with open(path) as f:
            return codename_of(parse_os_release(f.read()))
    except OSError:
        return None


def default_release() -> str:
    """The release a full-system host gets when its scenario names none: the
    machine's own if supported (what its namespace hosts run too), else bookworm."""
    mine = machine_release()
    return mine if mine in RELEASES else DEFAULT


def release_of(host) -> str:
    """A full-system host's codename: the one its scenario gives, else the default."""
    return host.release or default_release()


def archive_lines(codename: str, mirrors: list[str]) -> list[str]:
    """One-line apt sources for a release from a machine's mirrors, whatever release
    those mirrors were configured for: the release and its updates from the Debian
    mirror, its security updates from the security mirror (if the machine has one)."""
    plain = [m for m in mirrors if not m.rstrip("/").endswith("-security")]
    security = [m for m in mirrors if m.rstrip("/").endswith("-security")]
    if not plain:
        raise ReleaseError("no Debian mirror over http:// in the machine's apt sources")
    lines = [f"deb {plain[0]} {codename} main", f"deb {plain[0]} {codename}-updates main"]
    if security:
        lines.append(f"deb {security[0]} {codename}-security main")
    return lines
