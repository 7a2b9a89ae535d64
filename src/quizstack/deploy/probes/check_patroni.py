"""Nagios plugin: the replicated database as Patroni's REST API describes it.

argv: the /cluster URL of this host's Patroni, the number of members expected.
OK with one running primary and every other member streaming, one of them
synchronous; WARNING when a standby is missing, not streaming or none is
synchronous (commits no longer wait for a second copy); CRITICAL without a
primary or when this host's Patroni does not answer.
"""

import json
import sys
import urllib.request

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3


def verdict(members, expected):
    leaders = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
    standbys = [m for m in members if m.get("role") in ("replica", "sync_standby")]
    streaming = [m for m in standbys if m.get("state") in ("streaming", "running")]
    sync = [m for m in streaming if m.get("role") == "sync_standby"]
    shown = ", ".join(f"{m.get('name')} {m.get('role')} {m.get('state')}"
                      + (f" lag {m.get('lag')}" if m.get("role") != "leader" else "")
                      for m in members) or "no member"
    if len(leaders) != 1:
        return CRITICAL, f"PATRONI CRITICAL - {len(leaders)} running primaries: {shown}"
    if len(members) < expected or len(streaming) < expected - 1 or (expected > 1 and not sync):
        return WARNING, f"PATRONI WARNING - {shown}"
    return OK, f"PATRONI OK - {shown}"


def main(url, expected):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            members = json.load(response).get("members", [])
    except Exception as exc:
        print(f"PATRONI CRITICAL - {url}: {exc}")
        return CRITICAL
    state, line = verdict(members, expected)
    print(line)
    return state


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
