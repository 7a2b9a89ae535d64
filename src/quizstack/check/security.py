"""The service as an attacker from the clients' side finds it: no known password,
logins throttled, oversized bodies refused before a server sees them.

Each row runs the attack for real from a client host, through the firewall and
the balancer, and says what answered: a server (its answer carries X-Server)
or the balancer (it does not).
"""

from concurrent.futures import ThreadPoolExecutor

from quizstack.deploy.render import LOGIN_TRIES, LOGIN_WINDOW, MAX_BODY

FLOOD_TRIES = 40           # wrong passwords sent as fast as they go
FLOOD_HASHED_AT_MOST = 15  # of them, at most this many may reach a password check
OVERSIZE = 100 * 1024 * 1024
OVERSIZE_SECONDS = 1.0     # the refusal must come within this
CHUNKED = MAX_BODY + 1024 * 1024   # a chunked body over the limit (oversized_body says why not 100 MB)


def security_checks(checker):
    """Every row of this module, side by side: the flood comes from the last client,
    the others from the first."""
    jobs = (seed_passwords, oversized_body, login_flood)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(checker._timed, job, checker) for job in jobs]
        return [row for future in futures for row in future.result()]


def flood_client(plan):
    """The client the flood comes from: the last, so the first stays free for the other rows."""
    return plan.clients[-1]


def seed_passwords(checker):
    """The seed's published passwords (admin/1234, pepe/5678) do not log in, unless the
    scenario is a declared teaching setup ([service] demo), which the row then says."""
    if checker.plan.demo:
        return []
    found = checker._client(checker.plan.clients[0], "seed-logins", checker.base)
    ok = not any(result["logged_in"] for result in found.values())
    shown = ", ".join(f"{user}: HTTP {r['status']}, " + ("logged in" if r["logged_in"] else "refused")
                      for user, r in found.items())
    return [checker.row("security", "the seed's passwords (admin/1234, pepe/5678) are refused "
                        "through the firewall", ok, shown)]


def oversized_body(checker):
    """A 100 MB upload is answered 413 within a second, by the balancer (nothing reaches a
    server); a chunked one, which has no length, is refused by the server at the limit.

    The chunked body is only a megabyte over the limit: a server that refuses a
    body half sent closes with the rest unread, and the reset that follows may
    wipe its answer from the client's side before it is read (seen with 100 MB).
    """
    found = checker._client(checker.plan.clients[0], "oversize", checker.base, str(OVERSIZE),
                            str(CHUNKED), timeout=60)
    length, chunked = found["length"], found["chunked"]
    ok = (length["status"] == 413 and length["seconds"] <= OVERSIZE_SECONDS and not length["server"]
          and chunked["status"] == 413)
    shown = (f"with Content-Length: HTTP {length['status']} in {length['seconds']} s from the "
             f"{'server' if length['server'] else 'balancer'} after {length['sent'] // 1024} KiB sent; "
             f"chunked (try {chunked.get('tries', 1)}): HTTP {chunked['status']} in {chunked['seconds']} s after "
             f"{chunked['sent'] // 1024} KiB (limit {MAX_BODY // 1024} KiB)")
    return [checker.row("security", f"a {OVERSIZE // 2**20} MB upload is refused (413) within "
                        f"{OVERSIZE_SECONDS:.0f} s, before any server stores it", ok, shown)]


def login_flood(checker):
    """FLOOD_TRIES wrong passwords from one client, 8 at a time: at most
    FLOOD_HASHED_AT_MOST reach a password check, the rest are answered 429 with
    Retry-After, and then even the right password from that address is refused
    by the balancer, while another client logs in at once.

    Afterwards the flooder's entry is cleared from every balancer's table (what
    an operator does for an address throttled by mistake), so the checks and
    loads that follow log in from it as usual; its login right after proves it.
    """
    user, password = checker.admin_login()
    secret = {"QUIZSTACK_PASSWORD": password}
    flooder = flood_client(checker.plan)
    found = checker._client(flooder, "flood", checker.base, str(FLOOD_TRIES), user, env=secret,
                            timeout=120)
    others = [c for c in checker.plan.clients if c != flooder]
    other = (checker._client(others[0], "login", checker.base, user, env=secret)
             if others else None)
    cleared = forget_address(checker, client_address(checker, flooder))
    after = checker._client(flooder, "login", checker.base, user, env=secret)
    answers = found["answers"]
    refused = sum(n for what, n in answers.items() if what.endswith(" 429"))
    checked = FLOOD_TRIES - refused
    throttled = found["then"]["status"] == 429 and found["then"]["by"] == "balancer"
    ok = (checked <= FLOOD_HASHED_AT_MOST and refused + checked == FLOOD_TRIES
          and bool(found["retry_after"]) and throttled
          and (other is None or other["logged_in"]) and after["logged_in"])

    def said(result):
        return (f"HTTP {result['status']} from the {result['by']}, "
                + ("logged in" if result["logged_in"] else "refused"))

    shown = (", ".join(f"{n} x {what}" for what, n in sorted(answers.items()))
             + f" in {found['seconds']} s (Retry-After {', '.join(found['retry_after']) or 'missing'}); "
             f"then {user} from {flooder}: {said(found['then'])}"
             + (f"; from {others[0]} meanwhile: {said(other)}" if other else "")
             + f"; {flooder}'s entry cleared on {', '.join(cleared) or 'no balancer'}, "
             f"then: {said(after)}")
    return [checker.row("security", f"{FLOOD_TRIES} wrong passwords from {flooder}: at most "
                        f"{FLOOD_HASHED_AT_MOST} checked, the rest 429 (over {LOGIN_TRIES} failed logins in "
                        f"{LOGIN_WINDOW} s per address); other clients unaffected", ok, shown)]


# Runs on a balancer: forget one address in the login table (HAProxy's admin socket).
_CLEAR = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.settimeout(2)\n"
    "s.connect(sys.argv[1])\n"
    "s.sendall(('clear table quiz key %s\\n' % sys.argv[2]).encode())\n"
    "print(s.recv(4096).decode().strip() or 'cleared')\n"
)


def client_address(checker, client):
    host = checker.lab.topology.hosts[client]
    return str(host.interfaces[0].address)


def forget_address(checker, address):
    """Clear `address` from the login table of every balancer that answers; their names."""
    from quizstack.deploy.lb import STATS_SOCKET

    done = []
    for lb in checker.plan.lb_hosts:
        result = checker._run(lb, ["python3", "-c", _CLEAR, STATS_SOCKET, address], timeout=20)
        if result.returncode == 0:
            done.append(lb)
    return done
