"""The firewall's drops, read from an NFLOG group: one line per packet on stdout.

nftables' `log` writes to the kernel's ring buffer, which a network namespace
cannot have to itself: the kernel only logs there from the first namespace
(unless net.netfilter.nf_log_all_netns, a setting of the whole machine), and
dmesg is the machine's, not a host's. `log group N` instead hands the packet
to netlink (nfnetlink_log), which belongs to the namespace that logged it.
This program binds that group and prints each packet the way the kernel
would (prefix, IN/OUT, SRC/DST, PROTO, SPT/DPT, flags); its output goes to
the host's log like any program's, and from there to the logs host.

Only Debian's python3 is assumed (no libnetfilter_log binding).
"""

import argparse
import os
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_PF_BIND = 3
NFULNL_COPY_PACKET = 2
NFULA_PACKET_HDR = 1
NFULA_IFINDEX_INDEV = 4
NFULA_IFINDEX_OUTDEV = 5
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 112: "VRRP"}
TCP_FLAGS = ((0x02, "SYN"), (0x10, "ACK"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"))


def attribute(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def config_message(seq, family, group, attributes):
    body = struct.pack("=BBH", family, 0, socket.htons(group)) + b"".join(attributes)
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def attributes(data):
    """{type: payload} of a netlink message's attributes (nested flag bits cleared)."""
    found, offset = {}, 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x7FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


def interface(payload):
    if not payload:
        return ""
    index = struct.unpack(">I", payload)[0]
    try:
        return socket.if_indextoname(index)
    except OSError:
        return str(index)


def describe(attrs):
    """The kernel's way of writing a logged packet, from an NFLOG packet's attributes."""
    prefix = attrs.get(NFULA_PREFIX, b"").rstrip(b"\0").decode(errors="replace")
    words = [f"IN={interface(attrs.get(NFULA_IFINDEX_INDEV))}",
             f"OUT={interface(attrs.get(NFULA_IFINDEX_OUTDEV))}"]
    packet = attrs.get(NFULA_PAYLOAD, b"")
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        header = (packet[0] & 0x0F) * 4
        proto = packet[9]
        words += [f"SRC={socket.inet_ntoa(packet[12:16])}", f"DST={socket.inet_ntoa(packet[16:20])}",
                  f"LEN={struct.unpack('>H', packet[2:4])[0]}", f"TTL={packet[8]}",
                  f"PROTO={PROTOCOLS.get(proto, proto)}"]
        rest = packet[header:]
        if proto in (6, 17) and len(rest) >= 4:
            sport, dport = struct.unpack(">HH", rest[:4])
            words += [f"SPT={sport}", f"DPT={dport}"]
            if proto == 6 and len(rest) >= 14:
                words += [name for bit, name in TCP_FLAGS if rest[13] & bit]
        elif proto == 1 and len(rest) >= 2:
            words += [f"TYPE={rest[0]}", f"CODE={rest[1]}"]
    elif len(packet) >= 40 and packet[0] >> 4 == 6:
        words += [f"SRC={socket.inet_ntop(socket.AF_INET6, packet[8:24])}",
                  f"DST={socket.inet_ntop(socket.AF_INET6, packet[24:40])}", f"PROTO={packet[6]}"]
    return prefix + " ".join(words)


def bind(sock, group):
    seq = int(time.time())
    setup = [
        # Older kernels want the address families bound first; newer ignore it.
        (socket.AF_INET, 0, [attribute(NFULA_CFG_CMD, struct.pack("=Bxxx", NFULNL_CFG_CMD_PF_BIND))]),
        (socket.AF_UNSPEC, group, [attribute(NFULA_CFG_CMD, struct.pack("=Bxxx", NFULNL_CFG_CMD_BIND))]),
        # The packet's headers are enough; each packet is sent at once (no batching).
        (socket.AF_UNSPEC, group, [attribute(NFULA_CFG_MODE, struct.pack(">IBx", 128, NFULNL_COPY_PACKET) + b"\0\0"),
                                   attribute(NFULA_CFG_QTHRESH, struct.pack(">I", 1)),
                                   attribute(NFULA_CFG_TIMEOUT, struct.pack(">I", 0))]),
    ]
    for step, (family, res, attrs) in enumerate(setup):
        sock.send(config_message(seq + step, family, res, attrs))
        answer = sock.recv(65536)
        if len(answer) >= 20 and struct.unpack_from("=H", answer, 4)[0] == NLMSG_ERROR:
            error = struct.unpack_from("=i", answer, 16)[0]
            if error and step > 0:
                raise OSError(-error, f"NFLOG group {group}: {os.strerror(-error)}")


def messages(data):
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        yield kind, data[offset + 16:offset + length]
        offset += (length + 3) & ~3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--group", type=int, default=1)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, 0))
    bind(sock, args.group)
    print(f"reading NFLOG group {args.group}", flush=True)
    packet_kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
    while True:
        try:
            data = sock.recv(1 << 16)
        except OSError as exc:   # ENOBUFS: a burst overflowed the buffer; say so and go on
            print(f"nflog: {exc}", flush=True)
            continue
        for kind, body in messages(data):
            if kind == packet_kind and len(body) >= 4:
                print(describe(attributes(body[4:])), flush=True)


if __name__ == "__main__":
    sys.exit(main())
