"""What the demo services share: their config file (re-read when it changes) and their log file."""

from __future__ import annotations

import configparser
import gzip
import logging
import logging.handlers
import os
import shutil
from pathlib import Path

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s[%(process)d]: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


class LiveConfig:
    """An ini section read from one or more files (later files win), re-read whenever one changes
    (like a SIGHUP reload)."""

    def __init__(self, path: str | os.PathLike[str] | list[str | os.PathLike[str]], section: str):
        self.paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
        self.section = section
        self._stamp: tuple | None = None
        self.values: dict[str, str] = {}

    @property
    def path(self) -> Path:
        return self.paths[0]

    def refresh(self) -> bool:
        """True when a file changed since the last read."""
        stamp = tuple((st.st_mtime_ns, st.st_size) for st in (p.stat() for p in self.paths if p.exists()))
        if stamp == self._stamp:
            return False
        parser = configparser.ConfigParser()
        parser.read(self.paths, encoding="utf-8")
        self.values = dict(parser[self.section]) if parser.has_section(self.section) else {}
        self._stamp = stamp
        return True

    def int(self, key: str, default: int) -> int:
        return int(self.values.get(key, default))

    def float(self, key: str, default: float) -> float:
        return float(self.values.get(key, default))

    def str(self, key: str, default: str) -> str:
        return self.values.get(key, default)

    def bool(self, key: str, default: bool) -> bool:
        raw = self.values.get(key)
        return default if raw is None else raw.strip().lower() in ("1", "true", "yes", "on")


def _gzip_rotator(source: str, dest: str) -> None:
    with open(source, "rb") as src, gzip.open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.remove(source)


def configure_logging(name: str, path: str | os.PathLike[str], max_bytes: int = 0, backups: int = 3) -> logging.Logger:
    """Log to a file; with max_bytes > 0, rotate at that size and gzip the rotated files (logrotate's `compress`)."""
    logger = logging.getLogger(name)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    if max_bytes > 0:
        handler: logging.Handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
        handler.namer = lambda default: default + ".gz"
        handler.rotator = _gzip_rotator
    else:
        handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if max_bytes > 0 and Path(path).exists() and Path(path).stat().st_size > max_bytes:
        handler.doRollover()  # type: ignore[attr-defined]
    return logger
