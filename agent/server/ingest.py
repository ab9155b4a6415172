"""Request bodies into signals: size limits, JSON array or NDJSON, every item validated before anything is stored.

Errors are `IngestError(status, detail, index=, field=, line=)`: 413 for a body or batch over the limits, 400
for a body that is not JSON (or not UTF-8, or bad gzip), 422 for JSON that is not valid contract signals. The
detail is one line naming the item (`signals[3]`) and the field; the first bad item (in body order) is the
one reported, and a rejected batch stores nothing.
"""

from __future__ import annotations

import json
import re
import zlib
from datetime import datetime
from typing import Any, AsyncIterator

from pydantic import TypeAdapter, ValidationError

from agent.errors import InputError
from agent.models import Signal

_LIST = TypeAdapter(list[Signal])
_NOISE_LOC = ("function-after[_assign_id(), Signal]",)


class IngestError(Exception):
    def __init__(self, status: int, detail: str, *, index: int | None = None, field: str | None = None,
                 line: int | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.index = index
        self.field = field
        self.line = line

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"detail": self.detail}
        for k in ("index", "field", "line"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out


# --------------------------------------------------------------------------- the body


async def read_body(chunks: AsyncIterator[bytes], headers: Any, max_bytes: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to exceed `max_bytes`, compressed or not."""
    declared = headers.get("content-length")
    if declared and declared.strip().isdigit() and int(declared) > max_bytes:
        raise IngestError(413, f"request body of {int(declared)} bytes exceeds server.max_body_bytes ({max_bytes})")
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > max_bytes:
            raise IngestError(413, f"request body exceeds server.max_body_bytes ({max_bytes})")
    encoding = (headers.get("content-encoding") or "identity").strip().lower()
    if encoding in ("", "identity"):
        return bytes(buf)
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _inflate(bytes(buf), encoding, max_bytes)
    raise IngestError(400, f"unsupported Content-Encoding {encoding!r} (use gzip or none)")


def _inflate(data: bytes, encoding: str, max_bytes: int) -> bytes:
    # The limit holds for the inflated size too: a small gzip bomb must not fill the memory.
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, max_bytes + 1)
        if len(out) > max_bytes or d.unconsumed_tail:
            raise IngestError(413, f"decompressed request body exceeds server.max_body_bytes ({max_bytes})")
        out += d.flush()
    except zlib.error as exc:
        raise IngestError(400, f"request body is not valid {encoding} data: {exc}") from None
    if not d.eof:
        raise IngestError(400, f"request body is truncated {encoding} data")
    return out


def _text(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(400, f"request body is not UTF-8 text (byte {exc.start})") from None
    return text.removeprefix("\ufeff")


# --------------------------------------------------------------------------- signals


def parse_signals(body: bytes, max_batch: int) -> list[Signal]:
    """Contract signals from a JSON array, one JSON object, or NDJSON (one object per line)."""
    text = _text(body)
    head = text.lstrip()[:1]
    if not head:
        raise IngestError(400, "empty request body: expected a JSON array of signals or NDJSON (one signal per line)")
    # The body says what it is, whatever its Content-Type (curl -d sends form-urlencoded): NDJSON never starts with '['.
    if head == "[":
        signals = _array(text)
    elif head == "{" and _single_object(text):
        signals = _ndjson_items([(1, text)], max_batch)
    else:
        signals = _ndjson(text, max_batch)
    if len(signals) > max_batch:
        raise IngestError(413, f"batch of {len(signals)} signals exceeds server.max_batch ({max_batch}); split it")
    if not signals:
        raise IngestError(422, "no signals in the request body (an empty batch)")
    return signals


def _single_object(text: str) -> bool:
    """Whether the body is one (maybe pretty-printed) JSON object rather than NDJSON."""
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _array(text: str) -> list[Signal]:
    try:
        return _LIST.validate_json(text)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        syntax = [e for e in errors if e.get("type") == "json_invalid"]
        if syntax:
            raise IngestError(400, f"invalid JSON: {_json_msg(syntax[0])}") from None
        top = [e for e in errors if not e.get("loc") or not isinstance(e["loc"][0], int)]
        if top:
            raise IngestError(422, "expected a JSON array of signal objects") from None
        first = min(errors, key=lambda e: e["loc"][0])
        raise _item_error(first["loc"][0], first, None) from None


def _ndjson(text: str, max_batch: int) -> list[Signal]:
    lines = [(n, raw) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
    if len(lines) > max_batch:
        raise IngestError(413, f"batch of {len(lines)} signals exceeds server.max_batch ({max_batch}); split it")
    return _ndjson_items(lines, max_batch)


def _ndjson_items(lines: list[tuple[int, str]], max_batch: int) -> list[Signal]:
    out = []
    validate = Signal.model_validate_json
    for index, (lineno, raw) in enumerate(lines):
        try:
            out.append(validate(raw))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            if err.get("type") == "json_invalid":
                raise IngestError(400, f"signals[{index}] (line {lineno}): invalid JSON: {_json_msg(err)}",
                                  index=index, line=lineno) from None
            raise _item_error(index, err, lineno) from None
    return out


def _json_msg(err: dict[str, Any]) -> str:
    return str(err.get("ctx", {}).get("error") or err.get("msg", "invalid JSON"))


def _item_error(index: int, err: dict[str, Any], lineno: int | None) -> IngestError:
    loc = [p for p in err.get("loc", ()) if p not in _NOISE_LOC]
    if loc and loc[0] == index and isinstance(loc[0], int):
        loc = loc[1:]
    field = ".".join(str(p) for p in loc) or None
    kind = err.get("type")
    where = f"signals[{index}]" + (f" (line {lineno})" if lineno is not None else "")
    if kind in ("model_type", "dict_type", "model_attributes_type") and not field:
        got = type(err.get("input")).__name__ if err.get("input") is not None else "null"
        return IngestError(422, f"{where}: expected a JSON object (a signal), got {_json_type(got)}", index=index,
                           line=lineno)
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "missing":
        text = f"missing required field '{field}'"
    elif kind == "literal_error":
        text = f"field '{field}': {msg} (got {err.get('input')!r})"
    else:
        text = f"field '{field}': {msg}" if field else msg
    return IngestError(422, f"{where}: {text}", index=index, field=field, line=lineno)


def _json_type(py: str) -> str:
    return {"list": "an array", "str": "a string", "int": "a number", "float": "a number", "bool": "a boolean",
            "dict": "an object"}.get(py, py)


# --------------------------------------------------------------------------- Alertmanager

_ALERT_INDEX = re.compile(r"alerts\[(\d+)\]")
_ALERT_FIELD = re.compile(r"alerts\[\d+\]\.([A-Za-z0-9_.]+):")


def parse_alertmanager(body: bytes, now: datetime) -> list[Signal]:
    """One `alert` signal per alert of an Alertmanager webhook payload (or a JSON list of payloads)."""
    from agent.sensors.alertmanager import signals_from_payload

    text = _text(body)
    if not text.strip():
        raise IngestError(400, "empty request body: expected an Alertmanager webhook payload (a JSON object)")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(400, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    try:
        return signals_from_payload(obj, now)
    except InputError as exc:
        detail = str(exc)
        idx = _ALERT_INDEX.search(detail)
        fld = _ALERT_FIELD.search(detail)
        raise IngestError(422, detail, index=int(idx.group(1)) if idx else None,
                          field=fld.group(1) if fld else None) from None
