"""The shipper's disk buffer: an append-only directory of NDJSON batch files, oldest first.

A batch is written to a temporary name, fsynced, renamed into place and the directory fsynced, so a file
either exists whole or not at all, across crashes and power loss. A file is removed only after the server
answered 2xx for it. A batch the server refuses as invalid is moved to `rejected/` with the reason beside it
(kept for a person, never retried, never silently dropped).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Iterator, Sequence

from agent.models import Signal

SUFFIX = ".ndjson"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    def __init__(self, folder: str | os.PathLike[str]):
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir = self.dir / "rejected"

    # ------------------------------------------------------------------ writing

    def put(self, signals: Sequence[Signal]) -> Path | None:
        """Append one batch; returns its file (None for an empty batch)."""
        if not signals:
            return None
        body = "".join(json.dumps(s.model_dump(mode="json", by_alias=True, exclude_none=True), ensure_ascii=False,
                                  separators=(",", ":")) + "\n" for s in signals)
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"  # names sort oldest first
        return self._write(name, body.encode("utf-8"))

    def _write(self, name: str, data: bytes) -> Path:
        tmp = self.dir / f".{name}.tmp"
        final = self.dir / f"{name}{SUFFIX}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.dir)
        return final

    # ------------------------------------------------------------------ reading and settling

    def files(self) -> list[Path]:
        return sorted(self.dir.glob(f"*{SUFFIX}"))

    def __iter__(self) -> Iterator[Path]:
        return iter(self.files())

    def pending(self) -> int:
        """Signals waiting to be shipped."""
        return sum(self.count(p) for p in self.files())

    @staticmethod
    def count(path: Path) -> int:
        try:
            with open(path, "rb") as fh:
                return sum(1 for line in fh if line.strip())
        except FileNotFoundError:
            return 0

    def done(self, path: Path) -> None:
        """The server stored this batch (2xx): it may go."""
        path.unlink(missing_ok=True)
        _fsync_dir(self.dir)

    def split(self, path: Path) -> list[Path]:
        """Replace a batch by its two halves (the server found it too large); same place in the order."""
        lines = [ln for ln in path.read_bytes().splitlines(keepends=True) if ln.strip()]
        if len(lines) < 2:
            return [path]
        half = len(lines) // 2
        stem = path.name[: -len(SUFFIX)]
        first = self._write(f"{stem}-a", b"".join(lines[:half]))
        second = self._write(f"{stem}-b", b"".join(lines[half:]))
        self.done(path)
        return [first, second]

    def reject(self, path: Path, reason: str) -> Path:
        """Set a batch aside with why the server refused it."""
        self.rejected_dir.mkdir(exist_ok=True)
        target = self.rejected_dir / path.name
        os.replace(path, target)
        (self.rejected_dir / (path.name + ".reason")).write_text(reason + "\n", encoding="utf-8")
        _fsync_dir(self.dir)
        _fsync_dir(self.rejected_dir)
        return target
