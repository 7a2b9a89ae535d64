"""Rotation of the logs host's files by size: no logrotate runs in a lab host.

Every `--every` seconds, each *.log under `--dir` larger than `--max-bytes`
becomes .1 (.1 becomes .2, …, the oldest past `--keep` is removed), then
rsyslog is told to reopen its files (SIGHUP to the pid in `--pidfile`).
Between the rename and the reopen rsyslog goes on writing to the renamed
file, so no line is lost; `quizstack logs` reads the .1 files too.
"""

import argparse
import os
import signal
import sys
import time


def rotate(path, keep):
    for n in range(keep - 1, 0, -1):
        older = f"{path}.{n}"
        if os.path.exists(older):
            os.replace(older, f"{path}.{n + 1}")
    os.replace(path, f"{path}.1")


def oversized(root, max_bytes):
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".log") and os.path.getsize(path) > max_bytes:
                yield path


def reopen(pidfile):
    try:
        with open(pidfile) as f:
            os.kill(int(f.read().strip()), signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(f"logs_rotate: cannot signal rsyslog ({pidfile}): {exc}", flush=True)


def once(args):
    rotated = list(oversized(args.dir, args.max_bytes))
    for path in rotated:
        rotate(path, args.keep)
    if rotated:
        reopen(args.pidfile)
        print(f"logs_rotate: rotated {len(rotated)} file(s): {', '.join(rotated)}", flush=True)
    return rotated


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--max-bytes", type=int, required=True)
    parser.add_argument("--keep", type=int, default=4)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    if args.once:
        once(args)
        return 0
    while True:
        try:
            once(args)
        except OSError as exc:
            print(f"logs_rotate: {exc}", flush=True)
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
