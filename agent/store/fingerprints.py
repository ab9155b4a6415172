"""Persistence of the fingerprint miner's state (rows of `Fingerprinter.export_state()`).

Typical use (triage):

    fp = Fingerprinter(state=load_fingerprint_state(store))
    ... fp.fingerprint(message, source, service) ...
    save_fingerprint_state(store, fp.take_changes())
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Sequence

from agent.store import Store, naive_utc, now_utc

_COLS = "fingerprint, seq, source, service, founding, template, root, keys, state_version"


def load_fingerprint_state(store: Store) -> list[dict[str, Any]]:
    """Every stored cluster, oldest first, as `Fingerprinter(state=...)` takes them."""
    out = []
    for r in store.rows(f"SELECT {_COLS} FROM fingerprint_state ORDER BY seq"):
        out.append({
            "v": r["state_version"], "fingerprint": r["fingerprint"], "seq": r["seq"], "source": r["source"],
            "service": r["service"], "founding": r["founding"], "template": r["template"], "root": r["root"],
            "keys": json.loads(r["keys"]) if isinstance(r["keys"], str) else list(r["keys"] or ()),
        })
    return out


def save_fingerprint_state(store: Store, rows: Sequence[dict[str, Any]], at: datetime | None = None) -> int:
    """Insert or replace clusters (by fingerprint); returns how many were written."""
    if not rows:
        return 0
    when = naive_utc(at or now_utc())
    cols: dict[str, list] = {k: [] for k in ("fp", "seq", "src", "svc", "fnd", "tpl", "root", "keys", "v")}
    for r in rows:
        cols["fp"].append(r["fingerprint"])
        cols["seq"].append(int(r["seq"]))
        cols["src"].append(r.get("source") or "")
        cols["svc"].append(r.get("service") or "")
        cols["fnd"].append(r["founding"])
        cols["tpl"].append(r["template"])
        cols["root"].append(r.get("root"))
        cols["keys"].append(json.dumps(list(r.get("keys") or ()), ensure_ascii=False))
        cols["v"].append(int(r.get("v", 1)))
    with store.transaction():
        store.execute(
            f"INSERT OR REPLACE INTO fingerprint_state ({_COLS}, updated_at) "
            "SELECT unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
            "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[])::JSON, "
            "unnest(?::INTEGER[]), ?",
            [cols["fp"], cols["seq"], cols["src"], cols["svc"], cols["fnd"], cols["tpl"], cols["root"],
             cols["keys"], cols["v"], when],
        )
    return len(rows)
