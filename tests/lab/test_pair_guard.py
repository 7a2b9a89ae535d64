"""The pairs' elections under attack, as root on the shared complete lab.

From nagios (on LAN2 beside both pairs, its web interface open to the
clients) forged VRRP adverts with priority 255 for each pair's VRID and
addresses, spoofed from the holder's peer and from nagios itself, move
nothing: the check row says so, and the balancers' filter counted the
forgeries it dropped. The control: the very same forgery, sent where the
defence lets it through (on the balancers' link, from the peer's address),
does make the holder give the addresses up; so the defence, not a broken
packet, is what stopped the first. And a real loss still hands the
addresses over within seconds: the holder's cables are pulled (the `cut`
fault) and the other member takes them. Every test leaves the pair settled
(one MASTER holding every address, one BACKUP) and the service answering.
"""

import os
import time

import pytest

from quizstack.check import Checker
from quizstack.check.pairguard import attack, forged_adverts, pair_guard_checks, vrrp_drops
from quizstack.deploy.plan import build_plan
from quizstack.stack import pair_status

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)")

SETTLE = 30.0       # seconds a pair may take to settle after a fault is healed
TAKEOVER = 5.0      # seconds within which a silent holder's addresses must move


@pytest.fixture(scope="module")
def checker(complete):
    lab, _ = complete
    return Checker(lab, build_plan(lab.topology))


@pytest.fixture(scope="module")
def balancers(checker):
    return checker.plan.pair_of(checker.plan.lb_hosts[0])


def settled(checker, pair, timeout=SETTLE):
    """The pair's status once one member is MASTER holding every address and the other BACKUP."""
    running = set(checker.lab.topology.hosts)
    deadline = time.monotonic() + timeout
    while True:
        status = pair_status(checker.lab, pair, running)
        holder = status["holder"]
        states = sorted(m["state"] for m in status["members"].values())
        if (holder and status["members"][holder]["holds"] == status["addresses"]
                and status["members"][holder]["state"] == "MASTER"
                and states == ["BACKUP", "MASTER"]):
            return status
        assert time.monotonic() < deadline, f"pair {pair.name} not settled: {status['members']}"
        time.sleep(0.3)


def serves(checker, timeout=15.0):
    """A client's request to the service address is answered (200) within `timeout` seconds."""
    client, url = checker.plan.clients[0], f"{checker.base}/"
    probe = ("import sys, urllib.request\n"
             f"print(urllib.request.urlopen({url!r}, timeout=3).status)\n")
    deadline = time.monotonic() + timeout
    while True:
        done = checker._run(client, ["python3", "-c", probe], timeout=10)
        if done.stdout.strip() == "200":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def test_forged_adverts_from_nagios_move_no_address(checker, balancers):
    for pair in checker.plan.pairs:
        settled(checker, pair)
    holder = settled(checker, balancers)["holder"]
    dropped = vrrp_drops(checker._run, holder)
    rows = pair_guard_checks(checker)
    assert [r.group for r in rows] == ["firewall", "loadbalancer"]
    failed = [f"{r.name}: {r.detail}" for r in rows if not r.ok]
    assert not failed
    for row in rows:
        assert "from nagios (eth0, LAN2)" in row.detail and "stayed MASTER" in row.detail
    # The forgeries reached the holder and its filter dropped them: refused, not lost.
    assert vrrp_drops(checker._run, holder) > dropped
    assert serves(checker)


def test_the_same_forgery_through_the_defence_takes_the_addresses(checker, balancers):
    """The control: sent on the link from the peer's own address (where the filter
    and keepalived's source check let adverts in), the same priority 255 advert
    makes the holder step down and the peer takes the addresses."""
    pair = balancers
    holder = settled(checker, pair)["holder"]
    (peer,) = pair.peers(holder)
    link = pair.sync_network
    packets = forged_adverts(pair, [pair.own[peer][link]], [pair.own[holder][link]])
    sent, samples = attack(checker, pair, peer, pair.interface(peer, link), packets)
    assert sent["sent"] > 0 and not sent["errors"], sent
    # The holder yielded while the forgery lasted (keepalived: "Master received
    # advert from <peer> with higher priority 255"), and the peer took over.
    yielded = [t for t, members in samples if members[holder][0] != "MASTER"]
    assert yielded, f"the forgery on the link did not move the addresses: {samples}"
    after = settled(checker, pair)
    assert after["holder"] == peer
    assert serves(checker)


def test_a_holder_that_falls_silent_is_replaced_within_seconds(checker, balancers):
    pair = balancers
    lab = checker.lab
    running = set(lab.topology.hosts)
    holder = settled(checker, pair)["holder"]
    (peer,) = pair.peers(holder)
    fault = lab.inject("cut", holder)
    try:
        took = None
        while time.time() - fault["t"] < TAKEOVER + 5:
            status = pair_status(lab, pair, running)
            if status["members"][peer]["holds"] == status["addresses"]:
                took = time.time() - fault["t"]
                break
            time.sleep(0.05)
        assert took is not None and took < TAKEOVER, f"{peer} did not take over: {status['members']}"
        print(f"\n{pair.name}: {holder} cut, {peer} held {', '.join(status['addresses'])} "
              f"after {took:.2f} s")
        assert serves(checker)
    finally:
        lab.heal(holder)
    # Back, the member stands by (nopreempt): no second move for the users.
    assert settled(checker, pair)["holder"] == peer
    assert serves(checker)
