"""The lab's one door: a proxy from full-system hosts to the machine's Debian mirror.

Run as `python -m quizstack.lab.aptproxy SOCKET MIRROR_URL...` in the
machine's own namespaces. It listens on a Unix socket in the lab's state
directory, never on an address: the hosts see that directory (bound
read-only) and systemd in each host forwards 127.0.0.1:3142 to the socket, so
no lab address or route ever reaches the machine's network, and the hosts
reach nothing but this process.

It answers one proxy request per connection (apt is told not to pipeline):
GET or HEAD of an http:// URL under one of the machine's mirrors, nothing
else (403). The upstream answer is relayed as it comes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from urllib.parse import unquote, urlsplit

HEAD_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 20.0
IDLE_TIMEOUT = 120.0
DROPPED = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
           "upgrade"}


def allowed(url: str, mirrors: list[str]) -> bool:
    """True for an http URL under one of the mirrors (host and path prefix).

    The path is judged as the mirror will read it: decoded (`%2e%2e` is `..`,
    `%2f` a slash), and a path whose decoding still holds a `%` (encoded twice)
    or a backslash is refused rather than guessed at.
    """
    parts = urlsplit(url)
    path = unquote(parts.path)
    if (parts.scheme != "http" or not parts.hostname or "%" in path or "\\" in path
            or ".." in path.split("/") or "." in path.split("/")):
        return False
    for mirror in mirrors:
        m = urlsplit(mirror)
        if (parts.hostname == m.hostname and (parts.port or 80) == (m.port or 80)
                and (path + "/").startswith(m.path.rstrip("/") + "/")):
            return True
    return False


def parse_head(data: bytes):
    """(method, url, version, [(name, value)]) of a request head; ValueError if malformed."""
    lines = data.decode("latin-1").split("\r\n")
    method, url, version = lines[0].split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(version)
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        if not name or name != name.strip():
            raise ValueError(line)
        headers.append((name, value.strip()))
    return method, url, version, headers


def upstream_head(method: str, url: str, headers) -> bytes:
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    kept = [(n, v) for n, v in headers if n.lower() not in DROPPED and n.lower() != "host"]
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{n}: {v}" for n, v in kept]
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _refuse(writer, status: str, why: str):
    body = (why + "\n").encode()
    writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}"
                 f"\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()


async def _pipe(reader, writer):
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT)
        if not chunk:
            return
        writer.write(chunk)
        await writer.drain()


async def handle(reader, writer, mirrors):
    upstream = None
    try:
        try:
            data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
        except asyncio.LimitOverrunError:
            return await _refuse(writer, "431 Request Header Fields Too Large", "head too long")
        except (asyncio.IncompleteReadError, asyncio.TimeoutError):
            return
        try:
            method, url, _, headers = parse_head(data[:-4])
        except ValueError:
            return await _refuse(writer, "400 Bad Request", "malformed request")
        if method not in ("GET", "HEAD"):
            return await _refuse(writer, "405 Method Not Allowed", "only GET and HEAD")
        if not allowed(url, mirrors):
            return await _refuse(writer, "403 Forbidden",
                                 "the lab's door opens only on the machine's Debian mirrors")
        parts = urlsplit(url)
        try:
            up_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port or 80), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            return await _refuse(writer, "502 Bad Gateway", f"mirror unreachable: {exc}")
        upstream.write(upstream_head(method, url, headers))
        await upstream.drain()
        await _pipe(up_reader, writer)
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        if upstream is not None:
            upstream.close()
        writer.close()


async def serve(path: str, mirrors: list[str]):
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(lambda r, w: handle(r, w, mirrors), path=path,
                                             limit=HEAD_LIMIT)
    os.chmod(path, 0o666)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(0))
    print(f"aptproxy: listening on {path} for {', '.join(mirrors)}", flush=True)
    async with server:
        await stop
    os.unlink(path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print("usage: python -m quizstack.lab.aptproxy SOCKET MIRROR_URL...", file=sys.stderr)
        return 2
    asyncio.run(serve(argv[0], argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
