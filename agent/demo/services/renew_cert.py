"""Renew the demo endpoint's certificate (the allow-listed `renew-certificates` command).

`--shift-days N` instead moves the certificate's validity N days into the past, which is what
N days passing looks like to a certificate: the demo's way of letting time pass for it.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from agent.demo.services.certs import write_certificate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--days", type=float, default=90)
    parser.add_argument("--shift-days", type=float, default=None)
    args = parser.parse_args(argv)
    cert, key = Path(args.cert), Path(args.key)
    if args.shift_days is not None:
        old = x509.load_pem_x509_certificate(cert.read_bytes())
        start = old.not_valid_before_utc - timedelta(days=args.shift_days)
        days = (old.not_valid_after_utc - old.not_valid_before_utc).total_seconds() / 86400
        end = write_certificate(cert, key, not_before=start, days=days)
    else:
        end = write_certificate(cert, key, days=args.days)
    print(f"{cert}: certificate notAfter={end.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
