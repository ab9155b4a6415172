"""Print the total size in bytes of the files under a directory (a metric for the command sensor)."""

from __future__ import annotations

import os
import sys


def main() -> int:
    total = 0
    for root, _, files in os.walk(sys.argv[1]):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass  # rotated away while walking
    print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
