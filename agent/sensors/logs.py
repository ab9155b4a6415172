"""Log files: follow files and globs across rotation and truncation, one signal per entry.

Per file the store keeps (sensor_state, key "file:<path>") the file's identity
(device, inode and a hash of its first bytes), the byte offset of the first
byte not yet turned into a signal, and a generation that grows when the file is
truncated or replaced in place. Signal ids hash (sensor, file id, generation,
entry offset), and the runner commits signals and offsets in one transaction,
so a restart neither loses nor repeats a line.

- rotation by rename (logrotate, RotatingFileHandler): the old file is found by
  its inode next to the path and finished (including what the writer appends
  before it reopens), then the new file is read from its start;
- copytruncate: a file smaller than the offset, or whose first bytes changed,
  is read again from the start under a new generation;
- a partial last line waits for its newline; a trailing stack trace waits
  until the file has been quiet `multiline_flush_s` (or one more poll saw no
  growth), so a trace written in two pieces is still one signal.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import re
import stat
import time
from datetime import datetime
from typing import Any

from agent.clock import Clock
from agent.models import Signal, parse_ts, rfc3339
from agent.sensors.base import Sensor, SensorContext, describe_os_error
from agent.sensors.config import LogSensorConfig
from agent.sensors.logparse import LEVEL_RANK, Entry, Grouper, entry_level, line_time, resolve_tz
from agent.store import Store
from agent.store.sensors import delete_state, state_with_prefix
from agent.store.state import get_state, set_state

_HEAD_BYTES = 256
_MAX_MESSAGE = 256 * 1024  # one entry's text; a runaway trace is cut, not stored whole
_PREFIX = "file:"


def _head_hash(fd: int, length: int) -> str | None:
    """Hash of a file's first bytes, read through the open descriptor (never by name: it may be renamed)."""
    try:
        data = os.pread(fd, length, 0)
    except OSError:
        return None
    return hashlib.sha1(data).hexdigest() if len(data) == length else None


class LogSensor(Sensor):
    kind = "log"

    def __init__(self, conf: LogSensorConfig, ctx: SensorContext):
        super().__init__(conf, ctx)
        self.conf: LogSensorConfig = conf
        self.patterns = [str(ctx.path(p)) for p in conf.paths]
        self.tz = resolve_tz(conf.timezone)
        self.grouper = Grouper(conf.multiline, conf.max_entry_lines)
        self.service_re = re.compile(conf.service_pattern) if conf.service_pattern else None
        self.min_rank = LEVEL_RANK[conf.min_level]
        self._listings: dict[str, dict[tuple[int, int], str]] = {}

    def target(self) -> str:
        return ", ".join(self.conf.paths)

    # ------------------------------------------------------------------ one round

    def poll(self, store: Store, clock: Clock) -> list[Signal]:
        self.warnings = []
        self.backlog = False
        self._listings = {}  # directory listings are cached for one round only
        now = clock.now()
        poll_ns = time.time_ns()  # before any stat: a file written after it has a later mtime
        tracked = state_with_prefix(store, self.id, _PREFIX)  # "file:<fid>" -> state
        for t in tracked.values():  # states written by an earlier version lack these
            t.setdefault("at", t.get("path"))
            t.setdefault("lost_since", None)
            t.setdefault("seen_ns", None)
        initialized = bool(get_state(store, self.id, "initialized", False))
        last_poll_ns = get_state(store, self.id, "polled_ns")
        current = self._matching_files(tracked.values())
        by_ident = {(f.st_dev, f.st_ino): p for p, f in current.items()}
        known = {(t["dev"], t["ino"]) for t in tracked.values()} | set(by_ident)
        budget = [self.conf.max_bytes_per_poll]
        out: list[Signal] = []
        kept: dict[str, dict[str, Any]] = {}  # fid -> state
        claimed: set[str] = set()  # paths of matched files already followed

        def adopt_intermediates(st: dict[str, Any], since_ns: int | None) -> None:
            """Files born and rotated away between two rounds: read them whole, oldest first."""
            nonlocal out
            for mid, fst in self._intermediates(st["path"], since_ns, known):
                mst = self._new_state(mid, fst, 0, logical=st["path"])
                mst["retired_at"] = rfc3339(now)
                known.add((fst.st_dev, fst.st_ino))
                out += self._read(mid, mst, budget, now, final=True)
                kept[mst["fid"]] = mst

        order = sorted(tracked.values(), key=lambda t: (t.get("retired_at") is None, t.get("retired_at") or "", t["at"]))
        for st in order:
            st = dict(st)
            ident = (st["dev"], st["ino"])
            moved_to = by_ident.get(ident)
            if moved_to is not None and moved_to not in claimed:
                # Still one of the configured files (perhaps renamed into another matching name).
                st.update(at=moved_to, retired_at=None, lost_since=None)
                claimed.add(moved_to)
                out += self._read(moved_to, st, budget, now, final=False)
                kept[st["fid"]] = st
                continue
            first_rotation = st.get("retired_at") is None
            if first_rotation:
                st["retired_at"] = rfc3339(now)
            found = self._locate(st, ident)
            if found is None:
                lost_since = st.get("lost_since") or rfc3339(now)
                if (now - parse_ts(lost_since)).total_seconds() < self.conf.retired_keep_s:
                    kept[st["fid"]] = dict(st, lost_since=lost_since)  # a rename in flight; look again next round
                elif st.get("size", 0) > st["offset"]:
                    self.warn(f"{st['path']}: rotated away before it was read to the end and not found next to it; "
                              f"up to {st['size'] - st['offset']} bytes were not read")
            else:
                st.update(at=found, lost_since=None)
                before = st["offset"]
                out += self._read(found, st, budget, now, final=True)
                idle = (now - parse_ts(st["retired_at"])).total_seconds() >= self.conf.retired_keep_s
                if not (idle and st["offset"] == before):
                    kept[st["fid"]] = st
            if first_rotation:
                adopt_intermediates(st, st.get("seen_ns"))

        # Files seen for the first time (new matches, or the new file after a rotation).
        for path, fst in current.items():
            if path in claimed:
                continue
            start = 0 if (initialized or self.conf.start_at == "beginning") else fst.st_size
            st = self._new_state(path, fst, start)
            if initialized:
                # It appeared since the last round; earlier generations may already have rotated away.
                adopt_intermediates(st, last_poll_ns)
            claimed.add(path)
            out += self._read(path, st, budget, now, final=False)
            kept[st["fid"]] = st

        for st in kept.values():
            if st.get("retired_at") is None:
                st["seen_ns"] = poll_ns
        for fid in tracked.keys() - {_PREFIX + f for f in kept}:
            delete_state(store, self.id, fid)
        for fid, st in kept.items():
            if tracked.get(_PREFIX + fid) != st:
                set_state(store, self.id, _PREFIX + fid, st, at=now)
        set_state(store, self.id, "polled_ns", poll_ns, at=now)
        if not initialized:
            set_state(store, self.id, "initialized", True, at=now)
        return out

    # ------------------------------------------------------------------ files

    def _matching_files(self, tracked: Any) -> dict[str, os.stat_result]:
        found: dict[str, os.stat_result] = {}
        for pattern in self.patterns:
            names = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            matched = False
            for name in names:
                base = os.path.basename(name)
                if any(fnmatch.fnmatch(base, ex) for ex in self.conf.exclude):
                    continue
                try:
                    fst = os.stat(name)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    self.warn(f"{name}: {describe_os_error(exc)}")
                    matched = True
                    continue
                if stat.S_ISREG(fst.st_mode):
                    found[os.path.abspath(name)] = fst
                    matched = True
            if not matched and not any(fnmatch.fnmatch(t["path"], pattern) for t in tracked):
                if glob.has_magic(pattern):
                    self.warn(f"{pattern}: no file matches")
                elif os.path.isdir(pattern):
                    self.warn(f"{pattern}: is a directory (follow its files with a glob such as {pattern.rstrip('/')}/*.log)")
                else:
                    self.warn(f"{pattern}: no such file")
        return found

    def _new_state(self, path: str, fst: os.stat_result, start: int, logical: str | None = None) -> dict[str, Any]:
        fid = hashlib.sha1(f"{path}|{fst.st_dev}|{fst.st_ino}|{time.time_ns()}".encode()).hexdigest()[:16]
        return {"fid": fid, "path": logical or path, "at": path, "dev": fst.st_dev, "ino": fst.st_ino,
                "offset": start, "gen": 0, "held_end": None, "head": None, "head_len": 0, "size": fst.st_size,
                "retired_at": None, "lost_since": None, "seen_ns": None}

    def _listing(self, folder: str, stem: str, fresh: bool = False) -> dict[tuple[int, int], str]:
        """{identity: path} of the files in `folder` named after `stem` (cached for the round)."""
        key = f"{folder}\0{stem}"
        if fresh or key not in self._listings:
            found: dict[tuple[int, int], str] = {}
            try:
                names = os.listdir(folder)
            except OSError:
                names = []
            for name in names:
                if not name.startswith(stem):
                    continue
                full = os.path.join(folder, name)
                try:
                    fst = os.stat(full)
                except OSError:
                    continue
                if stat.S_ISREG(fst.st_mode):
                    found[(fst.st_dev, fst.st_ino)] = full
            self._listings[key] = found
        return self._listings[key]

    def _locate(self, st: dict[str, Any], ident: tuple[int, int]) -> str | None:
        """Where the file with this identity is now: where it was, or a sibling named after the original."""
        try:
            fst = os.stat(st["at"])
            if (fst.st_dev, fst.st_ino) == ident:
                return st["at"]
        except OSError:
            pass
        folder = os.path.dirname(st["path"])
        stem = os.path.basename(st["path"]).split(".")[0]
        for fresh in (False, True):  # a rename cascade may be under way: look twice
            path = self._listing(folder, stem, fresh).get(ident)
            if path is not None:
                try:
                    fst = os.stat(path)
                    if (fst.st_dev, fst.st_ino) == ident:
                        return path
                except OSError:
                    pass
        return None

    def _intermediates(self, logical: str, since_ns: int | None,
                       known: set[tuple[int, int]]) -> list[tuple[str, os.stat_result]]:
        """Rotated siblings of `logical` never followed and written after `since_ns`, oldest first."""
        folder, base = os.path.dirname(logical), os.path.basename(logical)
        if since_ns is None or not base:
            return []
        found = []
        for ident, full in self._listing(folder, base, fresh=True).items():
            name = os.path.basename(full)
            if name == base or name[len(base)] not in ".-_" or ident in known:
                continue
            if any(fnmatch.fnmatch(name, ex) for ex in self.conf.exclude):
                continue
            try:
                fst = os.stat(full)
            except OSError:
                continue
            if (fst.st_dev, fst.st_ino) == ident and fst.st_mtime_ns > since_ns:
                found.append((full, fst))
        found.sort(key=lambda item: item[1].st_mtime_ns)
        return found

    def _read(self, path: str, st: dict[str, Any], budget: list[int], now: datetime, *, final: bool) -> list[Signal]:
        """Read what is new in one file; update `st` in place; return its entries as signals."""
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return []  # renamed again since it was found: the next round finds it by inode
        except OSError as exc:
            self.warn(f"{path}: {describe_os_error(exc)}")
            return []
        with fh:
            fst = os.fstat(fh.fileno())
            if (fst.st_dev, fst.st_ino) != (st["dev"], st["ino"]):
                return []  # replaced between stat and open: the next round sees the new file
            size = fst.st_size
            st["size"] = size
            if size < st["offset"]:
                self._restart(st)  # copytruncate
            elif st["head_len"] and size > st["offset"] and _head_hash(fh.fileno(), st["head_len"]) != st["head"]:
                self._restart(st)  # truncated and written again past the old offset, or replaced in place
            if st["head_len"] < _HEAD_BYTES and size > st["head_len"]:
                length = min(size, _HEAD_BYTES)
                head = _head_hash(fh.fileno(), length)
                if head is not None:
                    st["head"], st["head_len"] = head, length
            offset = st["offset"]
            if size <= offset or budget[0] <= 0:
                if size > offset:
                    self.backlog = True
                return []
            fh.seek(offset)
            data = fh.read(min(size - offset, budget[0]))
        budget[0] -= len(data)
        at_eof = offset + len(data) >= size
        if not at_eof:
            self.backlog = True
        return self._consume(path, st, data, offset, fst.st_mtime, now, at_eof=at_eof, final=final and at_eof)

    @staticmethod
    def _restart(st: dict[str, Any]) -> None:
        st.update(offset=0, gen=st["gen"] + 1, held_end=None, head=None, head_len=0)

    def _consume(self, path: str, st: dict[str, Any], data: bytes, offset: int, mtime: float, now: datetime, *,
                 at_eof: bool, final: bool) -> list[Signal]:
        conf = self.conf
        cut = data.rfind(b"\n")
        if final:
            complete = data
        elif cut < 0:
            # No newline yet: a partial line waits, unless it is already too long to be a line.
            complete = data if len(data) >= min(conf.max_line_bytes, conf.max_bytes_per_poll) else b""
        else:
            complete = data[: cut + 1]
        lines: list[tuple[int, str]] = []
        pos = offset
        encoding, limit = conf.encoding, conf.max_line_bytes
        parts = complete.split(b"\n")
        if complete.endswith(b"\n"):
            parts.pop()
        for raw in parts:
            n = len(raw) + 1
            if len(raw) > limit:
                raw = raw[:limit]
            text = raw.decode(encoding, "replace")
            if text.endswith("\r"):
                text = text[:-1]
            lines.append((pos, text))
            pos += n
        consumed_to = offset + len(complete)
        entries = self.grouper.group(lines)
        if entries and not final:
            last = entries[-1]
            hold = False
            if not at_eof:
                hold = len(entries) > 1  # the rest of it may be in the unread part
            elif conf.multiline and last.may_continue():
                quiet = time.time() - mtime >= conf.multiline_flush_s
                hold = not quiet and st.get("held_end") != offset + len(data)
            if hold:
                entries.pop()
                consumed_to = last.offset
                st["held_end"] = offset + len(data)
            else:
                st["held_end"] = None
        else:
            st["held_end"] = None
        st["offset"] = consumed_to
        return [s for s in (self._signal(path, st, e, now) for e in entries) if s is not None]

    # ------------------------------------------------------------------ signals

    def _signal(self, path: str, st: dict[str, Any], entry: Entry, now: datetime) -> Signal | None:
        conf = self.conf
        first = entry.lines[0]
        level = entry_level(entry.lines, conf.default_level, conf.infer_level)
        if LEVEL_RANK[level] < self.min_rank:
            return None
        ts = line_time(first, now, self.tz) or now
        service = self.service
        if self.service_re is not None:
            m = self.service_re.search(first)
            if m and m.group("service"):
                service = m.group("service")
        logical = st.get("path") or path
        attrs: dict[str, Any] = {"path": logical, "offset": entry.offset}
        if path != logical:
            attrs["file"] = path
        if len(entry.lines) > 1 or entry.dropped:
            attrs["lines"] = len(entry.lines) + entry.dropped
        sid = "log-" + hashlib.sha1(f"{self.id}|{st['fid']}|{st['gen']}|{entry.offset}".encode()).hexdigest()[:20]
        message = entry.text()
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + f"\n... ({len(message) - _MAX_MESSAGE} more characters)"
        return Signal(id=sid, ts=ts, source="log", service=service, host=self.ctx.host, level=level,
                      message=message, attrs=attrs)
