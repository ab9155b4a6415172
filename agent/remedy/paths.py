"""Root confinement: every path a fix touches resolves (symlinks included) inside `remedy.roots`.

A relative path is looked up under each root in order (the first root holding
it wins; a path that exists nowhere lands under the first root). `..` is
refused outright rather than normalised: a fix has no reason to climb, and a
path that climbs is how confinement bugs start.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Sequence

from agent.config import Config
from agent.remedy.base import RefusedError


def configured_roots(cfg: Config) -> list[Path]:
    """The configured roots, resolved (symlinks followed), in config order."""
    return [cfg.path(r).resolve() for r in cfg.remedy.roots]


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def confine(raw: str | os.PathLike[str], roots: Sequence[Path], *, what: str = "file") -> Path:
    """Resolve `raw` to a real path inside one of `roots`, or refuse with one line saying why."""
    text = os.fspath(raw)
    if not roots:
        raise RefusedError(f"{what} {text!r}: no remedy roots are configured (remedy.roots), so no file may be changed")
    if not text.strip():
        raise RefusedError(f"{what}: empty path")
    if "\x00" in text:
        raise RefusedError(f"{what} {text!r}: contains a NUL byte")
    if ".." in PurePosixPath(text).parts:
        raise RefusedError(f"{what} {text!r}: '..' is not allowed in a path")
    given = Path(os.path.expanduser(text))
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [root / given for root in roots]
        existing = [c for c in candidates if os.path.lexists(c)]
        candidates = existing[:1] or candidates[:1]
    real = candidates[0].resolve(strict=False)
    if not _inside(real, roots):
        shown = f"{text!r} (resolves to {real})" if str(real) != text else repr(text)
        raise RefusedError(f"{what} {shown} is outside the remedy roots ({', '.join(map(str, roots))})")
    return real


def display(path: Path, roots: Sequence[Path]) -> str:
    """A path as the user knows it: relative to its root when inside one."""
    for root in roots:
        if path.is_relative_to(root):
            rel = path.relative_to(root)
            return str(rel) if str(rel) != "." else str(path)
    return str(path)
