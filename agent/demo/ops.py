"""Operations on the demo host, as its own tooling would do them: a deploy that renders configs from
their templates, and service restarts requested through the supervisor's control directory.

These are the commands the demo's selfheal.yaml allow-lists for `restart_service`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import jinja2


def journal(sandbox: Path, line: str, name: str = "deploy.log") -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    with open(sandbox / "var/log" / name, "a", encoding="utf-8") as fh:
        fh.write(f"{stamp} INFO {line}\n")


def deploy(sandbox: Path) -> Path:
    """Render etc/shop/shop.ini from deploy/shop.ini.j2 (what every release of the shop does)."""
    ports = json.loads((sandbox / "run/ports.json").read_text())
    template = sandbox / "deploy/shop.ini.j2"
    target = sandbox / "etc/shop/shop.ini"
    text = jinja2.Environment(keep_trailing_newline=True).from_string(template.read_text()).render(port=ports["shop"])
    tmp = target.with_suffix(".ini.tmp")
    tmp.write_text(text)
    tmp.replace(target)
    journal(sandbox, f"deploy[{__import__('os').getpid()}]: rendered config file {target} from template {template}")
    return target


def request_restart(sandbox: Path, unit: str, timeout: float = 10.0) -> None:
    """Ask the supervisor to restart a unit and wait until it has."""
    control = sandbox / "run/control"
    control.mkdir(parents=True, exist_ok=True)
    request = control / f"{unit}.restart"
    request.write_text(str(time.time()))
    deadline = time.monotonic() + timeout
    while request.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"ops: {unit} was not restarted within {timeout:.0f}s")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sandbox", required=True, type=Path)
    sub = parser.add_subparsers(dest="op", required=True)
    sub.add_parser("deploy")
    restart = sub.add_parser("restart")
    restart.add_argument("unit")
    args = parser.parse_args(argv)
    if args.op == "deploy":
        print(f"rendered {deploy(args.sandbox)}")
    else:
        request_restart(args.sandbox, args.unit)
        print(f"restarted {args.unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
