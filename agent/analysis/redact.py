"""Mask secrets before any text leaves the machine (model requests) or is stored from a probe.

Built-in patterns: private key blocks, Authorization/Bearer headers, passwords
in URLs, values of secret-named keys (password, secret, token, api_key, ...)
in `key=value`, `key: value` and JSON forms, and well-known token shapes
(OpenAI, GitHub, AWS, Slack, Google, Stripe keys, JWTs). The config's `redact:`
list adds regexes; their whole match is masked.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable

MASK = "[REDACTED]"

_SECRET_KEY = (r"[\w.-]*(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
               r"secret[_-]?key|private[_-]?key|client[_-]?secret|credentials?|auth[_-]?key|session[_-]?key)")

_BUILTIN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S),
     "[REDACTED PRIVATE KEY]"),
    (re.compile(r"(?i)\b(authorization|proxy-authorization)(\"?\s*[:=]\s*\"?)(bearer|basic|token|digest)?\s*[^\s\",;]+"),
     lambda m: f"{m.group(1)}{m.group(2)}{(m.group(3) + ' ') if m.group(3) else ''}{MASK}"),  # type: ignore[dict-item]
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/\s@]*:)([^@\s/]+)(@)"), r"\1" + MASK + r"\3"),
    (re.compile(r"(?i)(\"?\b" + _SECRET_KEY + r"\"?)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&}]+)(?<![=:])"),
     lambda m: f"{m.group(1)}{m.group(2)}{_quoted(m.group(3))}"),  # type: ignore[dict-item]
    (re.compile(r"(?i)([?&](?:access_token|token|api_key|apikey|key|password|secret|sig|signature)=)[^&\s]+"),
     r"\1" + MASK),
    (re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"), MASK),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), MASK),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), MASK),
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),
)


def _quoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[0] + MASK + value[0]
    return MASK


class Redactor:
    """Masks secrets in text and in nested JSON-like structures."""

    def __init__(self, extra: Iterable[str] = ()):
        self.extra = _compile(tuple(extra))

    def redact(self, text: str) -> str:
        if not text:
            return text
        for pat, repl in _BUILTIN:
            text = pat.sub(repl, text)  # type: ignore[arg-type]
        for pat in self.extra:
            text = pat.sub(MASK, text)
        return text

    def redact_obj(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {k: self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.redact_obj(v) for v in obj]
        return obj


@lru_cache(maxsize=32)
def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    from agent.errors import InputError

    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise InputError(f"config redact: invalid regular expression {p!r}: {exc}") from None
    return tuple(out)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    return Redactor(extra).redact(text)
