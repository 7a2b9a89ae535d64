"""The requirements, verified from outside as a client and an examiner would.

Each check runs real tools in the lab's hosts — nmap and ping from the
clients, HTTP requests through the firewall and the load balancer, file
listings on the storage bricks, SQL on the database host — and returns a
result row: what was verified, whether it held, and what was seen. Nothing
here prints; the command line renders the rows.
"""

import json
import re
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from quizstack.errors import CheckError

BALANCE_PER_SERVER = 10
AGENT_FIRST_ANSWER = 3.0    # seconds a fresh HAProxy may take to ask every load agent once
# nmap's wait for an answer in the lab, where answers take well under 1 ms.
QUICK_RTT = ("--initial-rtt-timeout", "50ms", "--max-rtt-timeout", "200ms")
# Common ports and the services of the roles (SSH, HTTP, PostgreSQL, gunicorn,
# glusterd, the first brick ports): what a leaky firewall most likely exposes.
SAMPLE_PORTS = ("21-23,25,53,80,110,111,135,139,143,443,445,993,995,1723,2049,3306,3389,"
                "5432,5900,8000,8080,8443,24007,24008,49152-49155")


@dataclass
class CheckResult:
    group: str
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0    # how long finding it out took

    def as_dict(self):
        return asdict(self)


def parse_nmap_grepable(text):
    """`nmap -oG -` output → {address: {"up", "open": [ports], "answered": {state: count}}}.

    "answered" counts the ports in every state but `filtered` (no answer),
    including the ones nmap folds into "Ignored State".
    """
    hosts = {}
    for line in text.splitlines():
        if not line.startswith("Host: "):
            continue
        address = line.split()[1]
        entry = hosts.setdefault(address, {"up": False, "open": [], "answered": {}})
        if "Status: Up" in line:
            entry["up"] = True
        if "Ports: " in line:
            ports, _, rest = line.split("Ports: ", 1)[1].partition("\t")
            for item in ports.split(", "):
                fields = item.strip().split("/")
                if len(fields) > 2:
                    if fields[1] == "open":
                        entry["open"].append(int(fields[0]))
                    if fields[1] != "filtered":
                        entry["answered"][fields[1]] = entry["answered"].get(fields[1], 0) + 1
            ignored = re.search(r"Ignored State: (\S+) \((\d+)\)", rest)
            if ignored and ignored.group(1) != "filtered":
                state = ignored.group(1)
                entry["answered"][state] = entry["answered"].get(state, 0) + int(ignored.group(2))
    return hosts


def parse_haproxy_stat(text, backend):
    """HAProxy's `show stat` CSV → {server: status} for one backend's servers."""
    servers = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[0] == backend and fields[1] not in ("FRONTEND", "BACKEND"):
            servers[fields[1]] = fields[17]
    return servers


def parse_haproxy_agents(text, backend):
    """HAProxy's `show stat` CSV → {server: (agent status, weight, the agent's last words)}."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    columns = lines[0][2:].split(",")
    found = {}
    for line in lines[1:]:
        row = dict(zip(columns, line.split(",")))
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND", None):
            found[row["svname"]] = (row.get("agent_status", ""), row.get("weight", ""),
                                    row.get("last_agt", ""))
    return found


def protected_addresses(plan):
    """Every lab address the firewall must protect: all but the clients' own."""
    return [str(a) for host, addresses in plan.lab_addresses.items()
            if host not in plan.clients for a in addresses]


def open_addresses(plan):
    """What the clients may open through the firewall: address -> its one open port."""
    found = {str(plan.lb_address): plan.port}
    m = plan.management
    if m and m.ges:
        found[str(m.ges_address)] = 22
    if m and m.nagios:
        found[str(m.nagios_address)] = m.nagios_port
    return found


class Checker:
    """Runs the checks of one deployed lab. `run(host, argv, **kw)` runs a command in a host."""

    def __init__(self, lab, plan, venv=None, ports="1-65535", attacks=True):
        self.lab = lab
        self.plan = plan
        # The attacks on the service (security, guard, forged adverts): rows of
        # their own, left out only where nothing changed since they last held.
        self.attacks = attacks
        self.python = f"{venv or sys.prefix}/bin/python"
        self.ports = ports
        self.base = f"http://{plan.lb_address}:{plan.port}"
        self._clock = threading.local()

    def row(self, group, name, ok, detail):
        """A result, timed from the previous row of this thread (or the start of its job)."""
        now = time.monotonic()
        started = getattr(self._clock, "mark", now)
        self._clock.mark = now
        return CheckResult(group, name, bool(ok), detail, round(now - started, 2))

    def _timed(self, job, *args):
        self._clock.mark = time.monotonic()
        return job(*args)

    def _run(self, host, argv, timeout=120):
        return self.lab.run(host, argv, timeout=timeout, check=False)

    def admin_login(self):
        """(user, password) of the service's administrator, as the checks log in."""
        return admin_login(self.lab.state_dir / "secrets", self.plan)

    def _client(self, host, *args, timeout=120, env=None):
        extra = {"env": env} if env else {}
        done = self.lab.run(host, [self.python, "-m", "quizstack.check.client", *args],
                            timeout=timeout, check=False, **extra)
        if done.returncode != 0:
            raise CheckError(f"{host}: `{' '.join(args[:1])}` failed: "
                             f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        return json.loads(done.stdout)

    # -- firewall -------------------------------------------------------------------------

    def _scan(self, client, targets, ports, pace):
        """A SYN scan from `client`: ({address: open ports}, {address: {state: count}})."""
        scan = self._run(client, [
            "nmap", "-n", "-Pn", "-sS", "--disable-arp-ping", "-p", ports, "--max-retries", "1",
            "-T5", "--min-hostgroup", "64", *pace, "-oG", "-", *targets], timeout=600)
        if scan.returncode != 0:
            raise CheckError(f"{client}: nmap failed: {scan.stderr.strip()}")
        hosts = parse_nmap_grepable(scan.stdout)
        return ({a: h["open"] for a, h in hosts.items() if h["open"]},
                {a: h["answered"] for a, h in hosts.items() if h["answered"]})

    def firewall(self, clients=None):
        """From each client: nothing but what is open to them answers, on any port of any address.

        Open to the clients: the service (the load balancer's port), and where
        the scenario has them, SSH on ges and Nagios's web interface.

        Behind a default-drop firewall no probe gets an answer except those to
        the load balancer's service port; any other answer, even a "closed",
        means a probe got through. Two scans make that verdict sound and fast:
        - every port of every address at a forced rate. Nearly every probe meets
          the drop, so nothing would tell nmap to go faster. At this rate every
          probe of both clients was counted arriving at fw, and an isolated leak
          (one forwarded port) is found every time (docs/performance.md);
        - first, a few common and service ports at a gentle rate. A firewall that
          lets much through makes the targets answer in a flood that the fast
          scan loses in the lab's bridges and routers (seen: a wholly open
          firewall looked closed to it); this scan sees such a leak in a second.
        """
        results = []
        targets = protected_addresses(self.plan)
        wanted = {address: [port] for address, port in open_addresses(self.plan).items()}
        expected = {address: {"open": 1} for address in wanted}
        for client in clients or self.plan.clients:
            found, answered = {}, {}
            # The lab answers in well under a millisecond: 200 ms is long enough
            # to call a probe unanswered.
            scans = [(SAMPLE_PORTS, ["--min-rate", "2000", *QUICK_RTT])]
            if self.ports:
                scans.append((self.ports, ["--min-rate", "250000", "--initial-rtt-timeout",
                                           "20ms", "--max-rtt-timeout", "50ms"]))
            for ports, pace in scans:
                found, answered = self._scan(client, targets, ports, pace)
                if answered != expected:
                    break
            seen = ", ".join(f"{a}:{','.join(map(str, p))}" for a, p in sorted(found.items())) or "none"
            extra = ", ".join(f"{a} {', '.join(f'{n} {s}' for s, n in states.items())}"
                              for a, states in sorted(answered.items())
                              if states != expected.get(a))
            results.append(self.row(
                "firewall", f"{client}: port scan of {len(targets)} addresses "
                            f"(TCP {self.ports or 'sample: common and service ports'})",
                answered == expected and found == wanted, f"open: {seen}" + (f"; answered: {extra}" if extra else "")))

            ping = self._run(client, ["nmap", "-n", "-sn", "-PE", "--disable-arp-ping",
                                      "--max-retries", "1", *QUICK_RTT, "-oG", "-", *targets],
                             timeout=120)
            up = sorted(a for a, h in parse_nmap_grepable(ping.stdout).items() if h["up"])
            results.append(self.row(
                "firewall", f"{client}: ICMP echo answered only by the load balancer",
                up == [str(self.plan.lb_address)], f"answered: {', '.join(up) or 'none'}"))
        return results

    # -- balancing ------------------------------------------------------------------------

    def balancing(self):
        """The policy in force, seen from a client (and, with load, from the balancers).

        Round-robin: 10 requests per server, one after the other, answered exactly 10 each.
        leastconn and load: the same 30 requests all answered and every server
        among the answerers (one request at a time finds every server idle, so
        leastconn takes them in turn too, unless a server is slower or, with
        load, its agent weighs it lower); with load, every balancer also hears
        every server's agent. That a slowed server gets fewer requests needs a
        load that lasts: tests/lab/test_balance.py and bench/balance show it.
        """
        client = self.plan.clients[0]
        policy = self.plan.balance
        # Ten each: 30 for the seed's three servers, 40 once scaled to four.
        requests = BALANCE_PER_SERVER * len(self.plan.backends)
        seen = self._client(client, "balance", self.base, str(requests))
        servers = seen["servers"]
        answered = seen["statuses"] == {"200": requests}
        shown = "/".join(str(servers.get(b.name, 0)) for b in self.plan.backends)
        names = "/".join(b.name for b in self.plan.backends)
        detail = f"{names}: {shown}; statuses {seen['statuses']}"
        if policy == "roundrobin":
            ok = answered and servers == {b.name: BALANCE_PER_SERVER for b in self.plan.backends}
            return [self.row("balancing", f"{requests} requests from {client} spread "
                                "round-robin", ok, detail)]
        ok = answered and all(servers.get(b.name) for b in self.plan.backends)
        name = f"{requests} requests from {client} reach every server (balance {policy})"
        if policy == "load":
            heard, agents = self._agents_heard()
            ok = ok and heard
            detail += f"; agents: {agents}"
        return [self.row("balancing", name, ok, detail)]

    def _agents_heard(self, wait=AGENT_FIRST_ANSWER):
        """(every balancer hears every server's agent, what they hear), from HAProxy's stats.

        Right after a deployment HAProxy may not have asked an agent yet
        (status INI): that is awaited, `wait` seconds at most (agent-inter 1s).
        """
        from quizstack.stack import _HAPROXY_STAT

        heard, shown = True, []
        for lb in self.plan.lb_hosts:
            deadline = time.monotonic() + wait
            while True:
                done = self._run(lb, ["python3", "-c", _HAPROXY_STAT], timeout=20)
                agents = parse_haproxy_agents(done.stdout, "quiz_servers")
                asked = all(agents.get(b.name, ("",))[0] not in ("", "INI")
                            for b in self.plan.backends)
                if asked or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
            for b in self.plan.backends:
                status, weight, last = agents.get(b.name, ("none", "?", ""))
                heard = heard and status == "L7OK"
                said = last.removeprefix("via agent : ") or status
                shown.append(f"{b.name} {said}, weight {weight}"
                             + (f" ({lb})" if len(self.plan.lb_hosts) > 1 else ""))
        return heard, ", ".join(shown)

    # -- storage and database -------------------------------------------------------------

    def storage_and_database(self):
        client = self.plan.clients[0]
        fetches = 3 * len(self.plan.backends)
        user, password = self.admin_login()
        secret = {"QUIZSTACK_PASSWORD": password}
        made = self._client(client, "upload", self.base, user, str(fetches),
                            str(len(self.plan.backends)), env=secret)
        results = []
        try:
            served = made["servers"]
            ok = (all(served.get(b.name) for b in self.plan.backends)
                  and made["identical"] == made["fetches"])
            results.append(self.row(
                "storage", "an image uploaded through the load balancer is served by every server",
                ok, f"{made['image']}: " + ", ".join(f"{k} {v}" for k, v in sorted(served.items()))))

            holders = []
            for nas, _ in self.plan.storage_hosts:
                path = f"{self.plan.brick}/media/{made['image']}"
                if self._run(nas, ["test", "-s", path]).returncode == 0:
                    holders.append(nas)
            results.append(self.row(
                "storage", f"the image is on every brick of volume {self.plan.volume}",
                len(holders) == len(self.plan.storage_hosts),
                f"present on: {', '.join(holders) or 'none'}"))

            query = f"select count(*) from quiz_quiz where id = {int(made['quiz'])}"
            counts = {}
            for database in self.plan.database_hosts:
                # A standby replays what it received a moment later: a few tries.
                deadline = time.monotonic() + 3
                while True:
                    rows = self._run(database, [
                        "runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t",
                        "-d", self.plan.database_name, "-c", query])
                    counts[database] = rows.stdout.strip() or rows.stderr.strip()[-60:]
                    if counts[database] == "1" or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
            where = " and ".join(f"{h}'s" for h in self.plan.database_hosts)
            results.append(self.row(
                "database", f"the quiz created through the load balancer is in {where} database",
                all(c == "1" for c in counts.values()),
                f"quiz {made['quiz']}: " + ", ".join(f"{h} {c} row(s)" for h, c in counts.items())))
        finally:
            self._client(client, "delete", self.base, user, str(made["quiz"]), env=secret)
        return results

    def database_placement(self):
        running = []
        for backend in self.plan.backends:
            ps = self._run(backend.name, ["ps", "-eo", "comm="])
            listening = self._run(backend.name, ["ss", "-Hltn", f"sport = :{self.plan.database_port}"])
            # The router to a replicated database listens on loopback only: not a database.
            others = [line for line in listening.stdout.splitlines()
                      if line.split() and not line.split()[3].startswith("127.0.0.1:")]
            if "postgres" in ps.stdout.split() or others:
                running.append(backend.name)
        results = [self.row("database", "no app server runs PostgreSQL", not running,
                               f"running on: {', '.join(running)}" if running else "none of "
                               + ", ".join(self.plan.web_hosts))]
        client = self.plan.clients[0]
        targets = [(str(a), self.plan.database_port) for a in self.plan.database_addresses]
        # Every address at once, 2 s for all: behind the firewall none answers.
        probe = ("import select,socket,time\nopen_=[];pending={}\n"
                 f"for a in {targets!r}:\n"
                 "    s=socket.socket();s.setblocking(False);s.connect_ex(a);pending[s]=a\n"
                 "end=time.monotonic()+2\n"
                 "while pending and time.monotonic()<end:\n"
                 "    _,ready,_=select.select([],list(pending),[],max(0,end-time.monotonic()))\n"
                 "    for s in ready:\n"
                 "        a=pending.pop(s)\n"
                 "        if s.getsockopt(socket.SOL_SOCKET,socket.SO_ERROR)==0: open_.append('%s:%d' % a)\n"
                 "print(' '.join(open_))\n")
        reach = self._run(client, ["python3", "-c", probe], timeout=30)
        answered = reach.stdout.split()
        shown = ", ".join(f"{a}:{p}" for a, p in targets)
        results.append(self.row(
            "database", f"the database port is closed to clients ({client})",
            reach.returncode == 0 and not answered,
            f"{shown} " + (f"answered: {' '.join(answered)}" if answered else "unreachable")))
        return results

    # -- pairs --------------------------------------------------------------------------

    def pairs(self):
        """Each pair: one member holds all its floating addresses, both serve."""
        from quizstack.stack import pair_status

        results = []
        running = set(self.lab.topology.hosts)
        for pair in self.plan.pairs:
            status = pair_status(self.lab, pair, running)
            members = status["members"]
            holders = [h for h, m in members.items() if m["holds"]]
            whole = len(holders) == 1 and members[holders[0]]["holds"] == status["addresses"]
            states = sorted(m["state"] for m in members.values())
            ok = whole and states == sorted(["MASTER"] + ["BACKUP"] * (len(members) - 1))
            shown = ", ".join(f"{h} {m['state']}" + (f" holding {', '.join(m['holds'])}"
                                                     if m["holds"] else "")
                              for h, m in members.items())
            results.append(self.row(
                pair.role, f"{pair.name}: one of {', '.join(pair.hosts)} holds "
                f"{', '.join(status['addresses'])}, the other stands by", ok, shown))
            if pair.role == "loadbalancer":
                results.append(self._balancers_serve(pair))
            if pair.role == "firewall":
                results.append(self._same_ruleset(pair))
                results.append(self._connections_shared(pair, status))
        return results

    def _balancers_serve(self, pair):
        """Every member's HAProxy sees every server UP: either can take over now."""
        from quizstack.stack import _HAPROXY_STAT

        seen = {}
        for host in pair.hosts:
            done = self._run(host, ["python3", "-c", _HAPROXY_STAT], timeout=20)
            seen[host] = parse_haproxy_stat(done.stdout, "quiz_servers")
        want = {b.name for b in self.plan.backends}
        ok = all({s for s, state in servers.items() if state.startswith("UP")} == want
                 for servers in seen.values())
        shown = "; ".join(f"{h}: " + (", ".join(f"{s} {st}" for s, st in servers.items())
                                       or "no answer") for h, servers in seen.items())
        return self.row(pair.role, f"{pair.name}: HAProxy on {' and '.join(pair.hosts)} "
                           "sees every server UP", ok, shown)

    def _same_ruleset(self, pair):
        rulesets = {}
        for host in pair.hosts:
            done = self._run(host, ["nft", "list", "table", "inet", "quizstack"], timeout=20)
            rulesets[host] = done.stdout if done.returncode == 0 else ""
        texts = set(rulesets.values())
        ok = len(texts) == 1 and "" not in texts
        shown = ", ".join(f"{h} {len(t.splitlines())} lines" if t else f"{h} none"
                          for h, t in rulesets.items())
        return self.row(pair.role, f"{pair.name}: the same nftables ruleset is loaded on "
                           f"{' and '.join(pair.hosts)}", ok, shown)

    def _connections_shared(self, pair, status):
        """A connection a client holds through the active firewall is in the
        standby's conntrackd cache: it would survive a takeover."""
        from quizstack.deploy.render import CONNTRACKD_CONF

        active = status["holder"]
        standby = [h for h in pair.hosts if h != active]
        name = f"{pair.name}: a client's connection through the active firewall is known to the other"
        if active is None or not standby:
            return self.row(pair.role, name, False, "no single active member")
        client = self.plan.clients[0]
        port = 40000 + secrets.randbelow(20000)
        hold = ("import socket,time\ns=socket.socket()\n"
                f"s.bind(('', {port}))\ns.settimeout(3)\n"
                f"s.connect(('{self.plan.lb_address}', {self.plan.port}))\ntime.sleep(3)\n")
        holder = threading.Thread(target=self._run, args=(client, ["python3", "-c", hold], 30))
        holder.start()
        found, deadline = "", time.monotonic() + 2.5
        try:
            while not found and time.monotonic() < deadline:
                time.sleep(0.2)
                done = self._run(standby[0], ["conntrackd", "-C", CONNTRACKD_CONF, "-e", "ct"],
                                 timeout=10)
                found = next((line for line in done.stdout.splitlines()
                              if f"sport={port} " in line and f"dst={self.plan.lb_address} " in line),
                             "")
        finally:
            holder.join()
        detail = (f"{client}:{port} -> {self.plan.lb_address}:{self.plan.port} through {active}: "
                  + ("in " + standby[0] + "'s external cache" if found else
                     f"not in {standby[0]}'s cache after 3 s"))
        return self.row(pair.role, name, bool(found), detail)

    # -- the replicated database -------------------------------------------------------

    def database_cluster(self):
        """One primary, every standby streaming with nothing left to replay, one
        synchronous; the consensus with every member healthy."""
        if not self.plan.replicated:
            return []
        from quizstack.stack import database_members

        members = database_members(self.lab, self.plan)
        leaders = [m["name"] for m in members if m.get("role") == "leader" and m.get("state") == "running"]
        standbys = sorted(h for h in self.plan.database_hosts if h not in leaders)
        replication = []
        if len(leaders) == 1:
            # The primary knows best who streams from it and how far behind they are.
            done = self._run(leaders[0], [
                "runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-F", " ", "-c",
                "select application_name, state, sync_state, pg_wal_lsn_diff(sent_lsn, replay_lsn) "
                "from pg_stat_replication order by 1"], timeout=20)
            replication = [line.split() for line in done.stdout.splitlines() if line.strip()]
        streaming = sorted(r[0] for r in replication if len(r) == 4 and r[1] == "streaming")
        ok = (len(leaders) == 1 and streaming == standbys
              and any(r[2] == "sync" for r in replication)
              and all(r[3] == "0" for r in replication))
        shown = (f"primary {leaders[0]}; " if len(leaders) == 1 else
                 f"primaries: {', '.join(leaders) or 'none'}; ") + (", ".join(
                     f"{r[0]} {r[1]} {r[2]}, {r[3]} bytes to replay" for r in replication)
                     or "no standby streaming")
        results = [self.row("database", "one primary; the standby streams synchronously with "
                               "nothing left to replay", ok, shown)]
        first = self.plan.consensus_hosts[0][0]
        endpoints = ",".join(f"http://{a}:2379" for _, a in self.plan.consensus_hosts)
        done = self._run(first, ["etcdctl", f"--endpoints={endpoints}", "endpoint", "health"],
                         timeout=30)
        healthy = [line.split()[0] for line in (done.stdout + done.stderr).splitlines()
                   if "is healthy" in line]
        results.append(self.row(
            "database", f"the consensus (etcd) answers on all {len(self.plan.consensus_hosts)} "
            "members", len(healthy) == len(self.plan.consensus_hosts),
            f"healthy: {', '.join(healthy) or 'none'}"))
        return results

    # -- the platform --------------------------------------------------------------------

    def platform(self):
        """Every full-system host runs the Debian release its scenario gives it (by
        default the machine's own), as its own /etc/os-release says."""
        topology = getattr(self.lab, "topology", None)
        systems = [h for h in topology.hosts.values() if h.system] if topology else []
        if not systems:
            return []
        from quizstack import debian

        wrong, seen = [], {}
        for host in systems:
            wanted = debian.release_of(host)
            done = self._run(host.name, ["cat", "/etc/os-release"], timeout=20)
            found = debian.codename_of(debian.parse_os_release(done.stdout)) or "unreadable"
            seen.setdefault(found, []).append(host.name)
            if found != wanted:
                wrong.append(f"{host.name} runs {found}, not {wanted}")
        detail = "; ".join(wrong) or ", ".join(
            f"{debian.release(c).name if c in debian.RELEASES else c}: {', '.join(names)}"
            for c, names in seen.items())
        return [self.row("platform", "every full system runs its scenario's Debian release",
                         not wrong, detail)]

    def service(self):
        """The round-robin count first and alone (it must see no other request),
        then the other checks side by side. The database's checks stay in
        sequence after the upload: "nothing left to replay" must not meet a
        write in flight."""
        rows = self.balancing()
        attacks = self.attacks
        jobs = [lambda: (self.storage_and_database() + self.database_cluster()
                         + (self.guard() if attacks else [])),
                self.database_placement,
                lambda: self.pairs() + (self.pair_guard() if attacks else []), self.access,
                self.monitoring, self.logs, self.platform]
        # The login flood throttles its client for a while: beside the others
        # only when another client is left for their logins.
        beside = len(self.plan.clients) > 1
        if beside and attacks:
            jobs.append(self.security)
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [pool.submit(self._timed, job) for job in jobs]
            for future in futures:
                rows += future.result()
        if attacks and not beside:
            rows += self._timed(self.security)
        return rows

    def guard(self):
        from quizstack.check.guard import guard_checks

        return guard_checks(self)

    def pair_guard(self):
        from quizstack.check.pairguard import pair_guard_checks

        return pair_guard_checks(self)

    def security(self):
        from quizstack.check.security import security_checks

        return security_checks(self)

    def monitoring(self):
        from quizstack.check.monitoring import monitoring_checks

        return monitoring_checks(self)

    def logs(self):
        from quizstack.check.logs import logs_checks

        return logs_checks(self)

    def access(self):
        from quizstack.check.access import access_checks
        from quizstack.deploy.sshkeys import ssh_config_path

        return access_checks(self, ssh_config_path(self.lab.state_dir / "secrets"))

    def all(self):
        """Every check; the scans from each client run beside the HTTP checks."""
        with ThreadPoolExecutor(max_workers=len(self.plan.clients) + 1) as pool:
            scans = [pool.submit(self._timed, self.firewall, [c]) for c in self.plan.clients]
            service = pool.submit(self._timed, self.service)
            return [row for job in scans + [service] for row in job.result()]


def admin_login(secrets_dir, plan):
    """The administrator's login: the seed's published one in a teaching setup
    ([service] demo), else the password generated for this deployment."""
    from quizstack.deploy import secrets

    if plan.demo:
        return secrets.ADMIN_USER, secrets.DEMO_ADMIN_PASSWORD
    return secrets.ADMIN_USER, secrets.load_or_create(secrets_dir)["admin_password"]


def run_checks(lab, plan, venv=None, ports="1-65535", attacks=True):
    """Every check; `ports=None` scans only the sample of common and service ports;
    `attacks=False` leaves out the attacks on the service (a no-change `up`)."""
    return Checker(lab, plan, venv=venv, ports=ports, attacks=attacks).all()


__all__ = ["CheckResult", "Checker", "run_checks", "parse_nmap_grepable"]
