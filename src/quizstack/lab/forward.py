"""The loopback forward: 127.0.0.1:PORT on the machine into the lab, as a client.

Run as `python -m quizstack.lab.forward --port P --netns PATH --target ADDR:PORT`
(and `--also P2=ADDR2:PORT2` for more ports, Nagios's web interface say).
It binds the listening socket in the machine's network namespace first, then
moves itself into a client host's network namespace (setns), so every
connection it opens to the target starts from that client and crosses the
scenario's firewall like the client's own traffic would. The lab starts it
detached, records its PID and stops it by that PID. It prints `ready` on
stdout once it accepts connections; errors go to stderr (the lab's log).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
CHUNK = 65536


def setns_net(path: str):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def serve_all(listeners, timeout: float):
    servers = [await start(listener, host, port, timeout) for listener, host, port in listeners]
    os.write(1, b"ready\n")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    await asyncio.gather(*(server.serve_forever() for server in servers))


async def start(listener: socket.socket, host: str, port: int, timeout: float):
    async def handle(client_r, client_w):
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            print(f"forward: cannot reach {host}:{port}: {exc}", file=sys.stderr, flush=True)
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
        for w in (up_w, client_w):
            w.close()

    return await asyncio.start_server(handle, sock=listener)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="quizstack.lab.forward")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--target", required=True, help="ADDRESS:PORT inside the lab")
    parser.add_argument("--also", action="append", default=[], metavar="PORT=ADDRESS:PORT",
                        help="another loopback port and its target (Nagios's web interface)")
    parser.add_argument("--connect-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    maps = [(args.port, args.target)]
    for item in args.also:
        port, sep, target = item.partition("=")
        if not sep or not port.isdigit() or ":" not in target:
            parser.error(f"--also wants PORT=ADDRESS:PORT, not {item!r}")
        maps.append((int(port), target))

    listeners = []
    for port, target in maps:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((args.bind, port))
        except OSError as exc:
            print(f"cannot listen on {args.bind}:{port}: {exc.strerror}", file=sys.stderr, flush=True)
            return 2
        listener.listen(128)
        listener.setblocking(False)
        host, _, target_port = target.rpartition(":")
        listeners.append((listener, host, int(target_port)))
    # Single-threaded until here: setns applies to this (only) thread.
    setns_net(args.netns)
    try:
        asyncio.run(serve_all(listeners, args.connect_timeout))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
