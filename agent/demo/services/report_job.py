"""The demo's nightly job: builds a sales report and uploads it to the bucket its version needs.

Version 2 of the job (job.ini `version = 2`) uploads to the bucket named by REPORT_BUCKET in
its environment, read the way Python jobs read it (`os.environ[...]`): a missing variable is a
KeyError traceback and exit status 1.
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    ini = configparser.ConfigParser()
    ini.read(args.config)
    version = ini.getint("job", "version", fallback=1)
    print(f"nightly-report {version}.0 starting")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "sales.csv"
    target.write_text("day,orders\n2026-12-04,1234\n")
    if version >= 2:
        bucket = os.environ["REPORT_BUCKET"]
        print(f"uploaded {target.name} to s3://{bucket}/reports/")
    print("nightly-report finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
