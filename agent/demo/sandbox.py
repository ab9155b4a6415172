"""The demo's sandbox: a small host's file tree (configs, deploy templates, crontab, logs, certificate)
and the selfheal.yaml that points every sensor at it and confines every fix to it."""

from __future__ import annotations

import json
import shutil
import socket
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

import jinja2

from agent.demo.services.certs import write_certificate

FILES = resources.files("agent.demo").joinpath("files")


@dataclass(frozen=True)
class Sandbox:
    root: Path
    ports: dict[str, int]

    def path(self, rel: str) -> Path:
        return self.root / rel

    @property
    def shop_ini(self) -> Path:
        return self.path("etc/shop/shop.ini")

    @property
    def shop_template(self) -> Path:
        return self.path("deploy/shop.ini.j2")

    @property
    def cert(self) -> Path:
        return self.path("etc/tls/edge.crt")

    @property
    def key(self) -> Path:
        return self.path("etc/tls/edge.key")

    def url(self, name: str, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _render(name: str, **values: object) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(FILES.joinpath(name).read_text(encoding="utf-8")).render(**values)


def build(root: Path, home: Path, *, watch_window_s: float) -> Sandbox:
    """Lay out a fresh sandbox under `root` and write the demo's selfheal.yaml into `home`."""
    if root.exists():
        shutil.rmtree(root)
    ports = {"shop": free_port(), "payments": free_port(), "tls": free_port()}
    box = Sandbox(root, ports)
    for d in ("etc/shop", "etc/worker", "etc/tls", "etc/default", "etc/report", "deploy", "crontabs",
              "var/log/shop", "run/inbox", "var/reports"):
        box.path(d).mkdir(parents=True, exist_ok=True)
    # The deploy template is the source of truth; `ops deploy` renders the live shop.ini from it.
    shutil.copy(FILES.joinpath("shop.ini.j2"), box.shop_template)
    box.path("run/ports.json").write_text(json.dumps(ports))
    shutil.copy(FILES.joinpath("runtime.ini"), box.path("etc/shop/runtime.ini"))
    shutil.copy(FILES.joinpath("worker.ini"), box.path("etc/worker/worker.ini"))
    box.path("etc/tls/tls.ini").write_text(_render("tls.ini.j2", ports=ports))
    shutil.copy(FILES.joinpath("crontab"), box.path("crontabs/root"))
    shutil.copy(FILES.joinpath("nightly-report.env"), box.path("etc/default/nightly-report"))
    shutil.copy(FILES.joinpath("job.ini"), box.path("etc/report/job.ini"))
    # Issued 89 days ago for 90 days: it expires tomorrow, and nothing renews it.
    write_certificate(box.cert, box.key, not_before=datetime.now(timezone.utc) - timedelta(days=89), days=90)
    home.mkdir(parents=True, exist_ok=True)
    (home / "selfheal.yaml").write_text(_render("selfheal.yaml.j2", sandbox=str(root), ports=ports,
                                                python=sys.executable, watch_window_s=watch_window_s))
    return box
