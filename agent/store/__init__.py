"""The store: one DuckDB file, the only place with SQL.

`Store.open(path)` takes the single-writer lock (a lock file beside the
database), applies pending numbered migrations, and hands out a connection.
`Store.open(path, readonly=True)` opens a read-only connection for readers.
Query functions live in the modules of this package, one per kind of record,
and take the Store as their first argument.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb

from agent.errors import LockedError, SelfhealError

_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def naive_utc(dt: datetime) -> datetime:
    """DuckDB TIMESTAMP columns hold naive UTC."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def aware(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.replace(tzinfo=timezone.utc)


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every shipped migration, in order."""
    found = []
    for entry in resources.files("agent.store").joinpath("migrations").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [n for n, _, _ in found]
    if len(numbers) != len(set(numbers)):
        raise SelfhealError("two migrations share a number in agent/store/migrations")
    return found


class Store:
    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None, lock_fd: int | None, readonly: bool):
        self.con = con
        self.path = path
        self._lock_fd = lock_fd
        self.readonly = readonly
        self._in_tx = 0

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None, *, readonly: bool = False, wait_s: float = 5.0) -> "Store":
        """Open the store at `path` (None: in memory). Writers take the lock; readers wait briefly for a busy writer."""
        if path is None:
            store = cls(duckdb.connect(":memory:"), None, None, False)
            store.migrate()
            return store
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if readonly and p.exists():
            return cls(_connect_retrying(p, read_only=True, wait_s=wait_s), p, None, True)
        fd = _take_lock(p)
        try:
            con = _connect_retrying(p, read_only=False, wait_s=wait_s)
        except BaseException:
            _release_lock(fd)
            raise
        store = cls(con, p, fd, False)
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        try:
            if self.con is not None:
                self.con.close()
        finally:
            if self._lock_fd is not None:
                _release_lock(self._lock_fd)
                self._lock_fd = None

    def pause(self) -> None:
        """Close the database but keep the writer lock: readers can open the file while a daemon sleeps."""
        if self.path is not None and self.con is not None:
            self.con.close()
            self.con = None  # type: ignore[assignment]

    def resume(self) -> None:
        if self.path is not None and self.con is None:
            self.con = _connect_retrying(self.path, read_only=self.readonly, wait_s=30.0)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ SQL helpers (for this package only)

    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """All or nothing; nested uses join the outer transaction."""
        if self._in_tx:
            self._in_tx += 1
            try:
                yield self
            finally:
                self._in_tx -= 1
            return
        self.con.execute("BEGIN TRANSACTION")
        self._in_tx = 1
        try:
            yield self
        except BaseException:
            self._in_tx = 0
            self.con.execute("ROLLBACK")
            raise
        else:
            self._in_tx = 0
            self.con.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
        if self.readonly and _WRITES.match(sql):
            raise SelfhealError("this store was opened read-only")
        return self.con.execute(sql, params) if params is not None else self.con.execute(sql)

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        cols = [d[0] for d in cur.description or ()]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> dict[str, Any] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        row = self.execute(sql, params).fetchone()
        return row[0] if row else None

    def next_number(self, name: str) -> int:
        """A named counter (issue and fix numbers), incremented inside the caller's transaction."""
        cur = self.scalar("SELECT value FROM counters WHERE name = ?", [name]) or 0
        self.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", [name, cur + 1])
        return cur + 1

    # ------------------------------------------------------------------ migrations

    def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction; returns the names applied."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS migrations (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
        done = {r[0] for r in self.con.execute("SELECT id FROM migrations").fetchall()}
        applied = []
        for number, name, sql in migrations():
            if number in done:
                continue
            with self.transaction():
                self.con.execute(sql)
                self.con.execute("INSERT INTO migrations VALUES (?, ?, ?)", [number, name, now_utc()])
            applied.append(f"{number:03d}_{name}")
        return applied

    def applied_migrations(self) -> list[str]:
        return [f"{r[0]:03d}_{r[1]}" for r in self.con.execute("SELECT id, name FROM migrations ORDER BY id").fetchall()]


_WRITES = re.compile(r"^\s*(insert|update|delete|create|drop|alter|copy|attach|detach|pragma|set)\b", re.I)


def _lock_path(p: Path) -> Path:
    return p.with_name(p.name + ".lock")


def _take_lock(p: Path) -> int:
    lock = _lock_path(p)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise LockedError(
            f"another selfheal writer (pid {holder}) holds the store {p}; stop it or wait for it to finish"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _release_lock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _connect_retrying(p: Path, *, read_only: bool, wait_s: float) -> duckdb.DuckDBPyConnection:
    """DuckDB refuses a second process while one has the file open; a writer between passes frees it quickly."""
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(p), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise LockedError(f"the store {p} is busy (another process has it open): {str(exc).splitlines()[0]}") from None
        except duckdb.Error as exc:
            raise SelfhealError(f"cannot open the store {p}: {str(exc).splitlines()[0]}") from None
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
