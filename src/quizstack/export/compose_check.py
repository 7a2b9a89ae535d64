"""The HTTP checks of `quizstack check`, against a Compose project run here.

The balancing row is the lab's own (check.Checker.balancing): its client
(quizstack.check.client, plain HTTP with cookies and CSRF) runs in the
Docker daemon's network namespace, where the balancer's port is published
on 127.0.0.1 — the clients' side of the firewall's one rule. The storage and
database rows follow the lab's (check.Checker.storage_and_database) with
what differs here: one shared volume instead of bricks, one database
container, looked into with `docker exec`.
"""

import subprocess
import sys
import time

from quizstack.check import Checker
from quizstack.deploy.secrets import ADMIN_USER, DEMO_ADMIN_PASSWORD
from quizstack.deploy.plan import build_plan
from quizstack.errors import CheckError
from quizstack.topology import load_scenario


class ProjectHosts:
    """`run(host, argv)` as the checks expect from a lab: a client runs in the daemon's
    namespace; a scenario host that is a container runs `docker exec` in it."""

    def __init__(self, project, plan):
        self.project = project
        self.plan = plan
        self._containers = None

    def container(self, host):
        if self._containers is None:
            self._containers = {s: c[0] for s, c in self.project.containers().items()}
        if host not in self._containers:
            raise CheckError(f"compose {self.project.name}: no container for {host}")
        return self._containers[host]

    def run(self, host, argv, timeout=120, check=False, env=None):
        from quizstack.export.compose_run import DOCKER

        if host in self.plan.clients:
            argv = ["nsenter", f"--net={self.project.netns_path}", *argv]
        else:
            argv = [DOCKER, "exec", self.container(host), *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=self.project.env() | (env or {}))

    def admin_login(self):
        """The administrator, as the seed made it from the export's own secret."""
        if self.plan.demo:
            return ADMIN_USER, DEMO_ADMIN_PASSWORD
        return ADMIN_USER, (self.project.dir / "secrets" / "admin_password").read_text().strip()


def run_checks(project):
    plan = build_plan(load_scenario(project.meta["scenario"]))
    hosts = ProjectHosts(project, plan)
    checker = Checker(hosts, plan, venv=sys.prefix, ports=None)
    checker.base = project.url.rstrip("/")
    checker._clock.mark = time.monotonic()
    seen = project.backends()
    rows = [checker.row(
        "balancing", f"HAProxy ({project.meta['loadbalancer']}) sees every server UP",
        set(seen) == set(plan.web_hosts) and all(v.startswith("UP") for v in seen.values()),
        ", ".join(f"{k} {v}" for k, v in seen.items()) or "no answer")]
    rows += checker.balancing()
    return rows + storage_and_database(checker, hosts, project)


def storage_and_database(checker, hosts, project):
    plan, meta = checker.plan, project.meta
    client = plan.clients[0]
    fetches = 3 * len(plan.backends)
    checker._clock.mark = time.monotonic()
    user, password = hosts.admin_login()
    secret = {"QUIZSTACK_PASSWORD": password}
    made = checker._client(client, "upload", checker.base, user, str(fetches),
                           str(len(plan.backends)), env=secret)
    rows = []
    try:
        served = made["servers"]
        ok = all(served.get(b.name) for b in plan.backends) and made["identical"] == made["fetches"]
        rows.append(checker.row(
            "storage", "an image uploaded through the load balancer is served by every server",
            ok, f"{made['image']}: " + ", ".join(f"{k} {v}" for k, v in sorted(served.items()))))

        path = f"{meta['media_root']}/{made['image']}"
        holders = [s for s in meta["servers"] if hosts.run(s, ["test", "-s", path]).returncode == 0]
        what = f"volume {plan.volume}" if meta.get("storage_hosts") else "the shared volume"
        rows.append(checker.row(
            "storage", f"the image is on {what}, seen by every server",
            holders == meta["servers"], f"{path} on: {', '.join(holders) or 'none'}"))
        if meta.get("storage_hosts"):
            # The lab's row: on every brick (the storage containers' own file systems).
            brick = f"{plan.brick}/media/{made['image']}"
            holders = [n for n in meta["storage_hosts"] if hosts.run(n, ["test", "-s", brick]).returncode == 0]
            rows.append(checker.row(
                "storage", f"the image is on every brick of volume {plan.volume}",
                holders == meta["storage_hosts"], f"present on: {', '.join(holders) or 'none'}"))

        query = f"select count(*) from quiz_quiz where id = {int(made['quiz'])}"
        database = meta["database"]
        done = hosts.run(database, ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t",
                                    "-d", plan.database_name, "-c", query])
        count = done.stdout.strip() or done.stderr.strip()[-60:]
        rows.append(checker.row(
            "database", f"the quiz created through the load balancer is in {database}'s database",
            count == "1", f"quiz {made['quiz']}: {database} {count} row(s)"))
    finally:
        checker._client(client, "delete", checker.base, user, str(made["quiz"]), env=secret)
    return rows
