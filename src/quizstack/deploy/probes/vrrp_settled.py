"""Exit 0 once a VRRP member has settled: master, or backup long enough that
a master must exist (with no master it would have taken over by then).

argv: the state file keepalived's notify script writes, the seconds to wait.
"""

import os
import sys
import time


def main(path, seconds):
    try:
        with open(path) as f:
            state = f.read().strip()
        age = time.time() - os.stat(path).st_mtime
    except OSError as exc:
        print(exc)
        return 1
    print(state, round(age, 1))
    return 0 if state == "MASTER" or (state == "BACKUP" and age >= seconds) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
