"""Nagios plugin: a GlusterFS volume's bricks online and its entries waiting for heal.

argv: the volume, the number of bricks expected. CRITICAL when a brick is
offline (the volume has lost a copy) or a file is in split-brain, WARNING
while entries wait to be healed (a brick that came back is catching up), OK
when every brick is online and nothing waits.
"""

import subprocess
import sys

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
GLUSTER = ["/usr/sbin/gluster", "--mode=script"]


def bricks_online(detail):
    """`gluster volume status VOL detail` → {brick: online?}."""
    bricks, current = {}, None
    for line in detail.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Brick":
            current = value.removeprefix("Brick ").strip()
        elif key == "Online" and current:
            bricks[current] = value == "Y"
    return bricks


def heal_counts(summary):
    """`gluster volume heal VOL info summary` → (entries to heal, in split-brain, unknown bricks)."""
    pending = split = unknown = 0
    for line in summary.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Total Number of entries":
            if value.isdigit():
                pending += int(value)
            else:
                unknown += 1
        elif key == "Number of entries in split-brain" and value.isdigit():
            split += int(value)
    return pending, split, unknown


def verdict(volume, expected, bricks, heal):
    online = sum(bricks.values())
    pending, split, unknown = heal
    shown = f"{volume}: {online}/{expected} bricks online, {pending} entries to heal"
    if split:
        shown += f", {split} in split-brain"
    offline = [b for b, up in bricks.items() if not up]
    if offline:
        shown += f" (offline: {', '.join(offline)})"
    if online < expected or split:
        return CRITICAL, f"GLUSTER CRITICAL - {shown}"
    if pending or unknown:
        return WARNING, f"GLUSTER WARNING - {shown}"
    return OK, f"GLUSTER OK - {shown} | online={online};;{expected} heal={pending}"


def run(*args):
    done = subprocess.run(GLUSTER + list(args), capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError((done.stderr or done.stdout).strip().splitlines()[-1:] or
                           [f"gluster exited {done.returncode}"])
    return done.stdout


def main(volume, expected):
    try:
        bricks = bricks_online(run("volume", "status", volume, "detail"))
        heal = heal_counts(run("volume", "heal", volume, "info", "summary"))
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"GLUSTER CRITICAL - {volume}: {exc}")
        return CRITICAL
    state, line = verdict(volume, expected, bricks, heal)
    print(line)
    return state


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
