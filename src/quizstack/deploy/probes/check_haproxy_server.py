"""Nagios plugin: one server's state in HAProxy, read from its stats socket.

argv: the socket, the backend, the server. OK when the server is UP,
WARNING when HAProxy is about to change its mind (UP 1/2, DOWN 1/2 going up)
or an operator drains it, CRITICAL when it is DOWN, in maintenance, or
HAProxy does not answer or does not know the server (a server added to the
scenario but not to HAProxy).
"""

import socket
import sys

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3


def server_state(stat, backend, server):
    """`show stat` CSV → (status, check detail) of one server, or None."""
    for line in stat.splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[0] == backend and fields[1] == server:
            detail = fields[36] if len(fields) > 36 else ""
            return fields[17], detail
    return None


def verdict(found, backend, server):
    if found is None:
        return CRITICAL, f"HAPROXY CRITICAL - no server {server} in backend {backend}"
    status, detail = found
    shown = f"{server} is {status} in {backend}" + (f" (last check: {detail})" if detail else "")
    if status == "UP":
        return OK, f"HAPROXY OK - {shown}"
    if status.startswith(("UP ", "DOWN ", "NOLB", "DRAIN")):
        return WARNING, f"HAPROXY WARNING - {shown}"
    return CRITICAL, f"HAPROXY CRITICAL - {shown}"


def show_stat(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(path)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def main(path, backend, server):
    try:
        stat = show_stat(path)
    except OSError as exc:
        print(f"HAPROXY CRITICAL - no answer on {path}: {exc}")
        return CRITICAL
    state, line = verdict(server_state(stat, backend, server), backend, server)
    print(line)
    return state


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
