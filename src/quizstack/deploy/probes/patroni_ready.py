"""Exit 0 when Patroni's cluster is whole: one running primary, every other
member running as its replica, one of them a synchronous standby.

argv: the /cluster URL of any member's REST API, the number of members expected.
"""

import json
import sys
import urllib.request


def main(url, expected):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            members = json.load(response).get("members", [])
    except Exception as exc:
        print(exc)
        return 1
    for m in members:
        print(m.get("name"), m.get("role"), m.get("state"), m.get("lag"))
    leaders = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
    others = [m for m in members if m.get("role") in ("replica", "sync_standby")
              and m.get("state") in ("streaming", "running")]
    sync = [m for m in others if m.get("role") == "sync_standby"]
    whole = len(leaders) == 1 and len(others) == expected - 1 and len(members) == expected
    return 0 if whole and (sync or expected == 1) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
