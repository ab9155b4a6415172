"""The gate's word lists and thresholds, read from rules/gate.yaml.

The lists are the contract's and live in the rules file, not in code; the
thresholds a deployment may tune (clock skew, necessity window, episode gap,
link bounds) can be overridden from the config file's `gate:` section. Only
keys the config sets explicitly override the rules file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import yaml

from agent.errors import InputError

if TYPE_CHECKING:
    from agent.config import Config

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "gate.yaml"


class Phrases:
    """A list of phrases found case-insensitively as whole words."""

    def __init__(self, phrases: Iterable[str]):
        self.phrases: tuple[str, ...] = tuple(dict.fromkeys(p.strip().lower() for p in phrases if p and p.strip()))
        # Longest first, so "disk is full" is reported rather than a shorter phrase inside it.
        alts = sorted(self.phrases, key=lambda p: (-len(p), p))
        body = "|".join(r"\s+".join(re.escape(w) for w in p.split()) for p in alts)
        self._re = re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE) if alts else None

    def found(self, text: str | None) -> list[str]:
        """The phrases present in `text`, lowercased, in order of appearance, each once."""
        if not text or self._re is None:
            return []
        seen: dict[str, None] = {}
        for m in self._re.finditer(text):
            seen.setdefault(" ".join(m.group(0).lower().split()), None)
        return list(seen)

    def __len__(self) -> int:
        return len(self.phrases)


@dataclass(frozen=True)
class GateSettings:
    vague: Phrases
    min_mechanism_words: int
    proximate: Phrases
    hedging: Phrases
    categories: tuple[str, ...]
    clock_skew_s: float = 5.0
    necessity_window_s: float = 6 * 3600.0
    episode_gap_s: float = 15 * 60.0
    min_links: int = 3
    max_links: int = 7
    archive_similarity: float = 0.5
    stopwords: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def load(cls, cfg: "Config | None" = None, path: str | Path | None = None) -> "GateSettings":
        """The rules file's lists and thresholds, with the config's explicit `gate:` keys on top."""
        settings = _load_file(str(Path(path) if path else RULES_FILE))
        if cfg is None:
            return settings
        gate = cfg.gate
        given = gate.model_fields_set
        changes: dict[str, Any] = {}
        if "clock_skew_s" in given:
            changes["clock_skew_s"] = float(gate.clock_skew_s)
        if "necessity_window_h" in given:
            changes["necessity_window_s"] = float(gate.necessity_window_h) * 3600.0
        if "episode_gap_min" in given:
            changes["episode_gap_s"] = float(gate.episode_gap_min) * 60.0
        if "min_links" in given:
            changes["min_links"] = int(gate.min_links)
        if "max_links" in given:
            changes["max_links"] = int(gate.max_links)
        return replace(settings, **changes) if changes else settings

    def with_(self, **changes: Any) -> "GateSettings":
        return replace(self, **changes)


@lru_cache(maxsize=8)
def _load_file(path: str) -> GateSettings:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise InputError(f"{path}: gate rules file not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping at the top level")

    def need(key: str, kind: type) -> Any:
        cur: Any = data
        for part in key.split("."):
            if not isinstance(cur, dict) or part not in cur:
                raise InputError(f"{path}: missing key '{key}'")
            cur = cur[part]
        if kind is float and isinstance(cur, int) and not isinstance(cur, bool):
            cur = float(cur)
        if not isinstance(cur, kind) or isinstance(cur, bool):
            raise InputError(f"{path}: '{key}' must be a {kind.__name__}")
        return cur

    def words(key: str) -> list[str]:
        items = need(key, list)
        if not all(isinstance(x, str) for x in items):
            raise InputError(f"{path}: '{key}' must be a list of strings")
        return items

    min_links, max_links = need("links.min", int), need("links.max", int)
    if not 0 < min_links <= max_links:
        raise InputError(f"{path}: links.min must be positive and at most links.max")
    return GateSettings(
        vague=Phrases(words("vague_mechanism.phrases")),
        min_mechanism_words=need("vague_mechanism.min_words", int),
        proximate=Phrases(words("proximate_symptom")),
        hedging=Phrases(words("hedging")),
        categories=tuple(c.strip().lower() for c in words("categories")),
        clock_skew_s=need("clock_skew_s", float),
        necessity_window_s=need("necessity_window_h", float) * 3600.0,
        episode_gap_s=need("episode_gap_min", float) * 60.0,
        min_links=min_links,
        max_links=max_links,
        archive_similarity=need("archive.similarity", float),
        stopwords=frozenset(w.lower() for w in words("archive.stopwords")),
    )
