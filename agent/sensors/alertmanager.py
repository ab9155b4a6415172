"""Alerts from other monitors: Prometheus Alertmanager webhook payloads as `alert` signals.

One signal per alert in a payload. A firing alert is a failure at the level its
`severity` label says (ERROR when it has none); a resolved alert is INFO. The
id is derived from the alert's identity, status and start (or end), so the
repeated notifications Alertmanager sends for a still-firing alert are stored
once. `selfheal ingest --format alertmanager FILE` and the HTTP webhook both
come through here.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.errors import InputError
from agent.models import Signal, open_text, parse_ts, rfc3339

_SEVERITY = {
    "critical": "CRITICAL", "crit": "CRITICAL", "page": "CRITICAL", "emergency": "CRITICAL", "fatal": "CRITICAL",
    "disaster": "CRITICAL",
    "error": "ERROR", "err": "ERROR", "high": "ERROR", "major": "ERROR",
    "warning": "WARNING", "warn": "WARNING", "minor": "WARNING", "medium": "WARNING", "average": "WARNING",
    "info": "INFO", "informational": "INFO", "notice": "INFO", "low": "INFO", "none": "INFO",
    "debug": "DEBUG",
}
_SERVICE_LABELS = ("service", "app", "app_kubernetes_io_name", "application", "job", "container")
_HOST_LABELS = ("host", "hostname", "node", "nodename", "instance")
_ZERO_TIME = "0001-01-01"


def _time(raw: Any, where: str) -> datetime | None:
    """Alertmanager times: RFC 3339 with up to nanoseconds; the zero time means 'not set'."""
    if raw in (None, "") or (isinstance(raw, str) and raw.startswith(_ZERO_TIME)):
        return None
    if not isinstance(raw, str):
        raise InputError(f"{where}: expected an RFC 3339 time, got {raw!r}")
    text = re.sub(r"(\.\d{6})\d+", r"\1", raw.strip())
    try:
        return parse_ts(text)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def _labels(obj: Any, where: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected an object of labels, got {type(obj).__name__}")
    return {str(k): str(v) for k, v in obj.items()}


def _host(labels: dict[str, str]) -> str | None:
    for key in _HOST_LABELS:
        value = labels.get(key)
        if value:
            if key == "instance":
                value = re.sub(r"^[a-z]+://", "", value)
                value = re.sub(r":\d+$", "", value).strip("[]")
            return value
    return None


def alert_signal(alert: dict[str, Any], payload: dict[str, Any], where: str, now: datetime) -> Signal:
    if not isinstance(alert, dict):
        raise InputError(f"{where}: expected an alert object, got {type(alert).__name__}")
    common = _labels(payload.get("commonLabels"), "commonLabels")
    labels = {**common, **_labels(alert.get("labels"), f"{where}.labels")}
    annotations = {**_labels(payload.get("commonAnnotations"), "commonAnnotations"),
                   **_labels(alert.get("annotations"), f"{where}.annotations")}
    status = str(alert.get("status") or payload.get("status") or "").lower()
    if status not in ("firing", "resolved"):
        raise InputError(f"{where}.status: expected 'firing' or 'resolved', got {alert.get('status')!r}")
    name = labels.get("alertname")
    if not name:
        raise InputError(f"{where}.labels.alertname: missing (every Alertmanager alert has one)")
    starts = _time(alert.get("startsAt"), f"{where}.startsAt")
    ends = _time(alert.get("endsAt"), f"{where}.endsAt")
    if status == "resolved":
        ts = ends or now
        level = "INFO"
    else:
        ts = starts or now
        severity = labels.get("severity", "").lower()
        level = _SEVERITY.get(severity, "ERROR")
    summary = annotations.get("summary") or annotations.get("description") or annotations.get("message")
    if not summary:
        shown = {k: v for k, v in labels.items() if k not in ("alertname", "severity")}
        summary = ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "no summary"
    message = f"[{status.upper()}] {name}: {summary}"
    identity = alert.get("fingerprint") or json.dumps(labels, sort_keys=True)
    anchor = rfc3339(ends) if status == "resolved" and ends else rfc3339(starts) if starts else rfc3339(ts)
    sid = "am-" + hashlib.sha1(f"{identity}|{status}|{anchor}".encode()).hexdigest()[:20]
    service = next((labels[k] for k in _SERVICE_LABELS if labels.get(k)), None)
    attrs: dict[str, Any] = {
        "check": name,
        "alertname": name,
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(starts) if starts else None,
        "endsAt": rfc3339(ends) if ends else None,
        "fingerprint": alert.get("fingerprint"),
        "generatorURL": alert.get("generatorURL"),
        "receiver": payload.get("receiver"),
    }
    return Signal(id=sid, ts=ts, source="alert", service=service, host=_host(labels), level=level, message=message,
                  attrs={k: v for k, v in attrs.items() if v not in (None, "", {})})


def signals_from_payload(obj: Any, now: datetime | None = None, where: str = "payload") -> list[Signal]:
    """Signals of one webhook payload (or a list of payloads), in alert order."""
    now = now or datetime.now(timezone.utc)
    if isinstance(obj, list):
        out: list[Signal] = []
        for i, item in enumerate(obj):
            out.extend(signals_from_payload(item, now, f"{where}[{i}]"))
        return out
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected an Alertmanager webhook payload (a JSON object), got {type(obj).__name__}")
    alerts = obj.get("alerts")
    if alerts is None:
        raise InputError(f"{where}: missing required field 'alerts'")
    if not isinstance(alerts, list):
        raise InputError(f"{where}.alerts: expected a list, got {type(alerts).__name__}")
    return [alert_signal(a, obj, f"{where}.alerts[{i}]", now) for i, a in enumerate(alerts)]


def signals_from_file(path: str | Path, now: datetime | None = None) -> list[Signal]:
    """A file holding one payload, a JSON list of payloads, or one payload per line."""
    name = "<stdin>" if str(path) == "-" else str(path)
    text = "\n".join(open_text(path))
    if not text.strip():
        raise InputError(f"{name}: empty file (expected an Alertmanager webhook payload)")
    try:
        return signals_from_payload(json.loads(text), now, name)
    except json.JSONDecodeError as whole_err:
        out: list[Signal] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(f"{name}:{whole_err.lineno}: invalid JSON: {whole_err.msg}") from None
            out.extend(signals_from_payload(obj, now, f"{name}:{lineno}"))
        return out
