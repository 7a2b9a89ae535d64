"""The first phase of every deployment: the Debian packages each host needs.

What a host needs follows from the phases that will run on it (packages.py).
A host whose init is systemd (a real Debian host, or a full-system lab host)
gets them with apt, through whatever proxy its apt is configured with; a
second run finds them installed and changes nothing. A namespace lab host
shares the machine's /usr, where setup.sh installed them: there the phase
only verifies, and a missing package is a clear error before any role runs.
"""

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.operations import apt

from quizstack.deploy import ops, packages
from quizstack.deploy.roles import Phase, scenario_host
from quizstack.errors import DeployError

ROLE = "packages"
APT_CACHE_SECONDS = 6 * 3600
# Files written before a package is installed, where its installation would
# otherwise do what a role does its own way: PostgreSQL's package creates and
# starts a cluster "main" on the default port, where the database role wants
# its own cluster.
BEFORE = {
    "postgresql": ("/etc/postgresql-common/createcluster.d/quizstack.conf",
                   "# Written by quizstack: the database role creates its own cluster.\n"
                   "create_main_cluster = false\n"),
}


class Installed(FactBase):
    """Which of some Debian packages are installed (dpkg's own status)."""

    def command(self, names):
        listed = " ".join(names)
        return f"dpkg-query -W -f='${{Package}} ${{Status}}\\n' {listed} 2>/dev/null || true"

    def process(self, output):
        return {line.split()[0] for line in output
                if line.strip().endswith("install ok installed")}


def verify_here(names):
    """Namespace lab hosts share this machine's /usr: their packages are checked here,
    once, without a phase of its own on every host."""
    import subprocess

    done = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", *names],
                          capture_output=True, text=True)
    have = {line.split()[0] for line in done.stdout.splitlines()
            if line.strip().endswith("install ok installed")}
    missing = [p for p in names if p not in have]
    if missing:
        raise DeployError(f"Debian packages missing on this machine, whose /usr the lab's "
                          f"hosts share: {', '.join(missing)} (run ./setup.sh)")


def phase(phases, shared=()):
    """The packages phase for the hosts of the other phases (None if there are none).

    The hosts in `shared` (namespace lab hosts) are verified here instead.
    """
    wanted = packages.per_host(phases)
    mine = sorted({p for h, found in wanted.items() if h in shared for p in found})
    if mine:
        verify_here(mine)
    wanted = {h: found for h, found in wanted.items() if h not in shared}
    if not wanted:
        return None

    def add_ops(plan, context):
        name = scenario_host()
        needed = list(wanted.get(name, packages.BASE))
        if host.get_fact(ops.InitSystem) == "systemd":
            for package in needed:
                if package in BEFORE:
                    ops.config_file(*BEFORE[package], name=f"before {package}")
            apt.packages(name=f"Debian packages: {', '.join(needed)}", packages=needed,
                         update=True, cache_time=APT_CACHE_SECONDS, no_recommends=True)
            return
        have = host.get_fact(Installed, names=needed)
        missing = [p for p in needed if p not in have]
        if missing:
            raise DeployError(f"host {name}: Debian packages missing: {', '.join(missing)} "
                              "(lab hosts share the machine's: run ./setup.sh)")

    return Phase(ROLE, "install", tuple(wanted), add_ops)
