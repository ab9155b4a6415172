"""A spool for signals recorded while another process holds the store.

`selfheal cron` and `selfheal beat` are called by jobs and services at any time,
often while the daemon is the store's writer. Rather than fail or wait, they
write their signals (and the sensor state that goes with them) to
`$SELFHEAL_HOME/spool/*.json`; the next sensing round stores them in one
transaction and removes the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from agent.models import Signal
from agent.store import Store


def spool_dir(cfg: Any) -> Path:
    return Path(cfg.home) / "spool"


def write(cfg: Any, signals: Sequence[Signal], state: Sequence[tuple[str, str, Any]] = ()) -> Path:
    """Atomically write one spool file; readers never see a half-written one."""
    folder = spool_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    body = {
        "signals": [s.model_dump(mode="json") for s in signals],
        "state": [list(item) for item in state],
    }
    fd, tmp = tempfile.mkstemp(prefix=".spool-", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh, default=str)
    unique = os.path.basename(tmp)[len(".spool-"):-len(".tmp")]
    final = folder / f"{time.time_ns():020d}-{os.getpid()}-{unique}.json"  # names sort oldest first
    os.replace(tmp, final)
    return final


def ingest(store: Store, cfg: Any) -> tuple[int, list[str]]:
    """Store every spooled file, oldest first; returns (signals stored, warnings)."""
    from agent.models import parse_model
    from agent.store.signals import insert_signals
    from agent.store.state import set_state

    folder = spool_dir(cfg)
    if store.readonly or not folder.is_dir():
        return 0, []
    stored, warnings = 0, []
    for path in sorted(folder.glob("*.json")):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            signals = [parse_model(Signal, s, f"{path.name}: signals[{i}]") for i, s in enumerate(body.get("signals", []))]
            state = [tuple(item) for item in body.get("state", [])]
            with store.transaction():
                stored += insert_signals(store, signals)
                for sensor, key, value in state:
                    set_state(store, sensor, key, value)
        except Exception as exc:  # a corrupt spool file is set aside, never blocks the others
            bad = path.with_suffix(".bad")
            os.replace(path, bad)
            warnings.append(f"spool: {path.name}: unreadable ({type(exc).__name__}: {exc}); kept as {bad.name}")
            continue
        path.unlink(missing_ok=True)
    return stored, warnings
