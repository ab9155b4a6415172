"""Print how many file descriptors the process named by a pid file has open (a metric for the command sensor)."""

from __future__ import annotations

import os
import sys


def main() -> int:
    try:
        pid = int(open(sys.argv[1]).read().strip())
        print(len(os.listdir(f"/proc/{pid}/fd")))
    except (OSError, ValueError) as exc:
        print(f"cannot count descriptors: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
