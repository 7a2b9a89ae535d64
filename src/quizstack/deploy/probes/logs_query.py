"""Lines of the merged log on the logs host, filtered, in time order (or followed).

Run on the logs host (`quizstack logs`, the checks, bench/logs) with Debian's
python3. Each line of the merged file is
`TIME HOST PROGRAM MESSAGE`, TIME in RFC 3339, UTC, to the microsecond; the
file is in arrival order (a backlog arrives late), so the lines are sorted
by TIME before they are printed. Rotated copies (all.log.1, …) are read too
when they may hold lines since --since.

    --hosts a,b      only these hosts
    --since TIME     only lines at or after TIME (same format, compared as text)
    --grep RE        only lines matching RE (Python syntax)
    --request ID     only lines naming that request (HAProxy's id=ID, QUIZ's [ID])
    --follow         then print new lines as they arrive, until killed
    --wait S --want RE [--want RE ...]
                     poll until, for every RE, some line matches (or S seconds
                     pass); print the matching lines (for checks)
"""

import argparse
import glob
import os
import re
import sys
import time

MERGED = "/var/log/quizstack/all.log"


def files(merged, since):
    rotated = sorted(glob.glob(merged + ".[0-9]*"), key=lambda p: -int(p.rsplit(".", 1)[1]))
    chosen = []
    for path in rotated:
        try:
            written = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(os.path.getmtime(path)))
        except OSError:
            continue
        if not since or written >= since[:19]:
            chosen.append(path)
    return chosen + [merged]


def matcher(args):
    hosts = set(args.hosts.split(",")) if args.hosts else None
    pattern = re.compile(args.grep) if args.grep else None
    request = args.request

    def keep(line):
        fields = line.split(" ", 3)
        if len(fields) < 3:
            return False
        if hosts is not None and fields[1] not in hosts:
            return False
        if args.since and fields[0] < args.since:
            return False
        if request and f"id={request}" not in line and f"[{request}]" not in line:
            return False
        return not pattern or bool(pattern.search(line))

    return keep


def read(paths, keep):
    found = []
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                found.extend(line.rstrip("\n") for line in f if keep(line))
        except FileNotFoundError:
            continue
    found.sort(key=lambda line: line.split(" ", 1)[0])
    return found


def follow(merged, keep):
    """Print the lines appended to the merged file from now on; follows its rotation."""
    f, inode, pending = None, None, b""
    while True:
        if f is None:
            try:
                f = open(merged, "rb")
            except FileNotFoundError:
                time.sleep(0.5)
                continue
            inode = os.fstat(f.fileno()).st_ino
            if pending is not None:       # the first open: start at the end
                f.seek(0, os.SEEK_END)
            pending = b""
        chunk = f.read(1 << 16)
        if chunk:
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace") + "\n"
                if keep(line):
                    sys.stdout.write(line)
            sys.stdout.flush()
            continue
        try:
            rotated = os.stat(merged).st_ino != inode
        except FileNotFoundError:
            rotated = True
        if rotated:                       # the rest of the old file was read above
            f.close()
            f, pending = None, None
            continue
        time.sleep(0.05)


def wait_for(merged, keep, wants, seconds, back=1024 * 1024):
    """Poll the merged file until every pattern matched a line; print those lines.

    The last `back` bytes are read first (lines that arrived before this
    started), then only what is appended, every 0.05 s; a rotation is followed.
    """
    patterns = [re.compile(w) for w in wants]
    seen = {}
    deadline = time.monotonic() + seconds
    f, inode, pending = None, None, b""
    while len(seen) < len(patterns):
        if f is None:
            try:
                f = open(merged, "rb")
                inode = os.fstat(f.fileno()).st_ino
                size = os.fstat(f.fileno()).st_size
                if pending is not None and size > back:
                    f.seek(size - back)
                    f.readline()
                pending = b""
            except FileNotFoundError:
                f = None
        chunk = f.read() if f else b""
        if chunk:
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if keep(line):
                    for i, p in enumerate(patterns):
                        if i not in seen and p.search(line):
                            seen[i] = line
            continue
        if time.monotonic() >= deadline:
            break
        try:
            if f and os.stat(merged).st_ino != inode:
                f.close()
                f, pending = None, None
                continue
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    for i in sorted(seen):
        print(f"{i} {seen[i]}")
    return 0 if len(seen) == len(patterns) else 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--merged", default=MERGED)
    parser.add_argument("--hosts", default="")
    parser.add_argument("--since", default="")
    parser.add_argument("--grep", default="")
    parser.add_argument("--request", default="")
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--wait", type=float, default=0)
    parser.add_argument("--want", action="append", default=[])
    args = parser.parse_args()
    keep = matcher(args)
    if args.want:
        return wait_for(args.merged, keep, args.want, args.wait)
    for line in read(files(args.merged, args.since), keep):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if args.follow:
        follow(args.merged, keep)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
