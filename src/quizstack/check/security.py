"""The service as an attacker from the clients' side finds it: no known password,
logins throttled, oversized bodies refused before a server sees them.

Each row runs the attack for real from a client host, through the firewall and
the balancer, and says what answered: a server (its answer carries X-Server)
or the balancer (it does not).
"""

from quizstack.deploy.render import LOGIN_TRIES, LOGIN_WINDOW, MAX_BODY

FLOOD_TRIES = 40           # wrong passwords sent as fast as they go
FLOOD_HASHED_AT_MOST = 15  # of them, at most this many may reach a password check
OVERSIZE = 100 * 1024 * 1024
OVERSIZE_SECONDS = 1.0     # the refusal must come within this
CHUNKED = MAX_BODY + 1024 * 1024   # a chunked body over the limit (oversized_body says why not 100 MB)
QUIET = 2 * LOGIN_WINDOW + 1   # seconds after a flood until its client may log in again


def security_checks(checker):
    """Every row of this module; the flood goes last (it leaves its client throttled for
    LOGIN_WINDOW seconds, which the row waits out before its last login)."""
    return seed_passwords(checker) + oversized_body(checker) + login_flood(checker)


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
             f"chunked: HTTP {chunked['status']} in {chunked['seconds']} s after "
             f"{chunked['sent'] // 1024} KiB (limit {MAX_BODY // 1024} KiB)")
    return [checker.row("security", f"a {OVERSIZE // 2**20} MB upload is refused (413) within "
                        f"{OVERSIZE_SECONDS:.0f} s, before any server stores it", ok, shown)]


def login_flood(checker):
    """FLOOD_TRIES wrong passwords from one client: at most FLOOD_HASHED_AT_MOST reach a
    password check, the rest are answered 429 with Retry-After; once the client
    has been quiet long enough, a right login works again.

    HAProxy's rate over a window is an estimate that still weighs the window
    before the current one: a burst fades out within two windows, not one.
    """
    user, password = checker.admin_login()
    found = checker._client(flood_client(checker.plan), "flood", checker.base, str(FLOOD_TRIES),
                            str(QUIET), user, env={"QUIZSTACK_PASSWORD": password},
                            timeout=120)
    answers = found["answers"]
    refused = sum(n for what, n in answers.items() if what.endswith(" 429"))
    checked = FLOOD_TRIES - refused
    ok = (checked <= FLOOD_HASHED_AT_MOST and refused + checked == FLOOD_TRIES
          and bool(found["retry_after"]) and found["after_wait"]["logged_in"])
    shown = (", ".join(f"{n} x {what}" for what, n in sorted(answers.items()))
             + f" in {found['seconds']} s (Retry-After {', '.join(found['retry_after']) or 'missing'}); "
             f"{QUIET} s later {user}: HTTP {found['after_wait']['status']} from the "
             f"{found['after_wait']['by']}, "
             + ("logged in" if found["after_wait"]["logged_in"] else "refused"))
    return [checker.row("security", f"{FLOOD_TRIES} wrong passwords from "
                        f"{flood_client(checker.plan)}: at most {FLOOD_HASHED_AT_MOST} checked, the "
                        f"rest 429 (over {LOGIN_TRIES} logins in {LOGIN_WINDOW} s per address)",
                        ok, shown)]
