"""Nagios plugin: memory still available to new work (MemAvailable), in percent.

argv: the warning and critical thresholds, in percent available (10 5).
"""

import sys

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3


def meminfo(text):
    """/proc/meminfo → {field: kB}."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            fields[key.strip()] = int(parts[0])
    return fields


def verdict(fields, warning, critical):
    total, available = fields.get("MemTotal"), fields.get("MemAvailable")
    if not total or available is None:
        return UNKNOWN, "MEMORY UNKNOWN - no MemAvailable in /proc/meminfo"
    percent = 100.0 * available / total
    state = CRITICAL if percent < critical else WARNING if percent < warning else OK
    name = ("OK", "WARNING", "CRITICAL")[state]
    return state, (f"MEMORY {name} - {percent:.0f}% available ({available / 1048576:.1f} of "
                   f"{total / 1048576:.1f} GiB) | available={percent:.1f}%;{warning};{critical}")


def main(warning, critical):
    try:
        with open("/proc/meminfo") as f:
            state, line = verdict(meminfo(f.read()), warning, critical)
    except OSError as exc:
        state, line = UNKNOWN, f"MEMORY UNKNOWN - {exc}"
    print(line)
    return state


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]), float(sys.argv[2])))
