"""Questions about issues, in words: an offline answerer (default) and a pydantic-ai agent (with a model).

The offline answerer matches a question to an intent (agent/chat_intents.yaml:
regular expressions, data not code) and answers from the store: what is open,
what happened to an issue and why, what broke lately, what recurs, the report
figures, what changed before a failure, what was learned, what is noise. It
says so when it does not understand, and its replies name it in a footer: no
model is pretended.

With `analysis.model` configured, `make_answerer` returns the pydantic-ai
agent of agent/chat_agent.py instead (kept apart so the offline path never
imports pydantic-ai).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field

from agent.errors import InputError
from agent.models import rfc3339
from agent.report import ACTIVE, compute_report, gate_all_passed, transitions
from agent.store import Store
from agent.store import report as q

OFFLINE_FOOTER = "— offline answerer (no model configured)"
OFFLINE_BY_CHOICE_FOOTER = "— offline answerer (--offline: the configured model was not asked)"
_UNIT_S = {"m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600,
           "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800,
           "weeks": 604800, "night": 12 * 3600}


class ChatSettings(BaseModel):
    """The optional `chat:` section of the config file."""

    model_config = ConfigDict(extra="forbid")

    recent_window_h: float = 24.0
    change_window_h: float = 24.0
    max_items: int = Field(default=20, ge=1)
    sql_max_rows: int = Field(default=200, ge=1)

    @classmethod
    def from_config(cls, cfg: Any) -> "ChatSettings":
        raw = (getattr(cfg, "model_extra", None) or {}).get("chat") or {}
        if not isinstance(raw, dict):
            raise InputError("config: chat: expected a mapping")
        try:
            return cls.model_validate(raw)
        except Exception as exc:  # pydantic ValidationError: one line naming the key
            err = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
            raise InputError(f"config: chat.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


@dataclass
class Answer:
    question: str
    intent: str
    text: str
    refs: dict[str, list[str]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    answerer: str = "offline"
    footer: str = OFFLINE_FOOTER

    def render(self) -> str:
        return f"{self.text}\n\n{self.footer}"

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "intent": self.intent, "answer": self.text,
                "references": {k: v for k, v in self.refs.items()}, "data": self.data,
                "answerer": self.answerer, "footer": self.footer}


# --------------------------------------------------------------------------- intents (data)


@dataclass(frozen=True)
class Intent:
    name: str
    description: str
    examples: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    needs: str | None


@dataclass(frozen=True)
class IntentBook:
    intents: tuple[Intent, ...]
    params: dict[str, tuple[re.Pattern[str], ...]]
    change_patterns: tuple[re.Pattern[str], ...]


def _compile(patterns: Sequence[str], where: str) -> tuple[re.Pattern[str], ...]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p, re.I))
        except re.error as exc:
            raise InputError(f"{where}: invalid regular expression {p!r}: {exc}") from None
    return tuple(out)


def load_intents(path: str | Path | None = None) -> IntentBook:
    """Read an intents file (default: the shipped agent/chat_intents.yaml)."""
    if path is None:
        text = resources.files("agent").joinpath("chat_intents.yaml").read_text(encoding="utf-8")
        where = "agent/chat_intents.yaml"
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{where}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: invalid YAML: {exc}") from None
    intents = []
    for i, spec in enumerate(data.get("intents") or []):
        if not isinstance(spec, dict) or not spec.get("name") or not spec.get("patterns"):
            raise InputError(f"{where}: intents[{i}] needs a name and patterns")
        intents.append(Intent(name=spec["name"], description=spec.get("description", ""),
                              examples=tuple(spec.get("examples") or ()),
                              patterns=_compile(spec["patterns"], f"{where}: intents[{i}]"), needs=spec.get("needs")))
    params = {k: _compile(v, f"{where}: params.{k}") for k, v in (data.get("params") or {}).items()}
    return IntentBook(tuple(intents), params, _compile(data.get("change_patterns") or (), f"{where}: change_patterns"))


@lru_cache(maxsize=1)
def default_intents() -> IntentBook:
    return load_intents()


@dataclass
class Parsed:
    intent: str
    issue_num: int | None = None
    chain: str | None = None
    fix: str | None = None
    window_s: float | None = None
    today: bool = False
    scores: dict[str, int] = field(default_factory=dict)


def parse_question(book: IntentBook, text: str, *, context_issue: bool = False) -> Parsed:
    """The intent with the most matching patterns (ties: the first listed) and the parameters named in the text."""
    p = Parsed(intent="unknown")
    for rx in book.params.get("issue", ()):
        m = rx.search(text)
        if m:
            p.issue_num = int(m.group(1))
            break
    for name in ("chain", "fix"):
        for rx in book.params.get(name, ()):
            m = rx.search(text)
            if m:
                setattr(p, name, m.group(0).upper())
                break
    for rx in book.params.get("window", ()):
        m = rx.search(text)
        if m:
            groups = [g for g in m.groups() if g is not None]
            if len(groups) == 2:
                p.window_s = float(groups[0]) * _UNIT_S[groups[1].lower()]
            else:
                p.window_s = float(_UNIT_S[groups[0].lower()])
            break
    p.today = any(rx.search(text) for rx in book.params.get("today", ()))
    has_issue = p.issue_num is not None or p.chain is not None or p.fix is not None or context_issue
    best, best_score = None, 0
    for intent in book.intents:
        if intent.needs == "issue" and not has_issue:
            continue
        score = sum(1 for rx in intent.patterns if rx.search(text))
        p.scores[intent.name] = score
        if score > best_score:
            best, best_score = intent, score
    if best is not None:
        p.intent = best.name
    return p


# --------------------------------------------------------------------------- formatting helpers


def _t(dt: datetime | None) -> str:
    return rfc3339(dt) if dt else "—"


def _dur(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.1f} days".replace(".0 days", " days")


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _clip(text: str | None, n: int = 140) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def chain_path(chain: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
    """(node, mechanism linking it to the node before) from the symptom back to the root."""
    nodes = {n["id"]: n for n in chain.get("nodes", [])}
    cause_of: dict[str, tuple[str, str]] = {}
    for link in chain.get("links", []):
        cause_of.setdefault(link["effect"], (link["cause"], link.get("mechanism", "")))
    path = [(nodes[chain["symptom"]], None)] if chain.get("symptom") in nodes else []
    seen = {chain.get("symptom")}
    cur = chain.get("symptom")
    while cur in cause_of:
        nxt, mech = cause_of[cur]
        if nxt in seen or nxt not in nodes:
            break
        path.append((nodes[nxt], mech))
        seen.add(nxt)
        cur = nxt
    return path


def chain_in_words(chain: dict[str, Any], indent: str = "  ") -> list[str]:
    """symptom <- cause <- ... <- root, one line per node, with the mechanism of each link."""
    lines = []
    for k, (node, mech) in enumerate(chain_path(chain)):
        if k == 0:
            lines.append(f"{indent}symptom: {node['statement']}")
            continue
        root = node["id"] == chain.get("root")
        label = f"root cause [{node.get('category') or 'uncategorised'}]" if root else "because"
        lines.append(f"{indent}<- {label}: {node['statement']}  ({mech})")
    return lines


def _norm(text: str | None) -> str:
    return " ".join((text or "").lower().split())


# --------------------------------------------------------------------------- the offline answerer


class OfflineAnswerer:
    """Answers from the store by intent; keeps the last issue talked about for follow-up questions."""

    name = "offline"

    def __init__(self, store: Store, *, now: datetime | None = None, settings: ChatSettings | None = None,
                 intents: IntentBook | None = None, footer: str = OFFLINE_FOOTER):
        self.store = store
        self.footer = footer
        self._now = now
        self.settings = settings or ChatSettings()
        book = intents or default_intents()
        # an intent the data names but this answerer has no answer for is neither matched nor offered in help
        self.book = IntentBook(tuple(i for i in book.intents if hasattr(self, f"_intent_{i.name}")), book.params,
                               book.change_patterns)
        self.last_issue: str | None = None
        self._report: dict[str, Any] | None = None

    # -- shared lookups

    @property
    def now(self) -> datetime | None:
        return self._now or q.latest_record_ts(self.store)

    def report(self) -> dict[str, Any]:
        if self._report is None:
            self._report = compute_report(self.store, now=self._now)
        return self._report

    def _issue_id(self, p: Parsed) -> tuple[str | None, str | None]:
        """(issue id, why it could not be found)."""
        if p.issue_num is not None:
            iid = f"ISS-{p.issue_num:04d}"
            return (iid, None) if q.existing(self.store, "issue", [iid]) else (None, f"There is no issue {iid} in the store.")
        if p.chain:
            row = next((c for c in q.chain_rows(self.store) if c["id"] == p.chain), None)
            if row is None or not row["issue_id"]:
                return None, f"There is no chain {p.chain} of an issue in the store."
            return row["issue_id"], None
        if p.fix:
            row = next((f for f in q.fix_rows(self.store) if f["id"] == p.fix), None)
            if row is None or not row["issue_id"]:
                return None, f"There is no fix {p.fix} of an issue in the store."
            return row["issue_id"], None
        return self.last_issue, None

    # -- entry point

    def answer(self, question: str) -> Answer:
        text = (question or "").strip()
        if not text:
            return self._help(question, "help", "Ask me a question about the issues in the store.", footer=self.footer)
        self._report = None  # the store may have moved on since the last question (a daemon writes between them)
        p = parse_question(self.book, text, context_issue=self.last_issue is not None)
        handler = getattr(self, f"_intent_{p.intent}", None)
        if handler is None:
            return self._help(question, "unknown", "I did not understand the question.", footer=self.footer)
        ans = handler(question, p)
        ans.footer = self.footer
        issues = ans.refs.get("issues") or []
        if len(issues) == 1:
            self.last_issue = issues[0]
        return ans

    # -- help

    def _help(self, question: str, intent: str, lead: str, footer: str = OFFLINE_FOOTER) -> Answer:
        lines = [lead, "I can answer questions like these (from the store, without a model):"]
        for known in self.book.intents:
            if known.name == "help":
                continue
            ex = f' — e.g. "{known.examples[0]}"' if known.examples else ""
            lines.append(f"- {known.description}{ex}")
        return Answer(question, intent, "\n".join(lines),
                      data={"intents": [i.name for i in self.book.intents if i.name != "help"]}, footer=footer)

    def _intent_help(self, question: str, p: Parsed) -> Answer:
        return self._help(question, "help", "Ask me about the issues in the store.")

    # -- what is open / needs a human

    def _intent_open(self, question: str, p: Parsed) -> Answer:
        issues = [i for i in q.issue_rows(self.store) if i["status"] in ACTIVE]
        events = q.issue_event_rows(self.store)
        latest = {}
        for e in events:
            latest[e["issue_id"]] = e
        human = [i for i in issues if i["status"] == "needs-human"]
        others = [i for i in issues if i["status"] != "needs-human"]
        if not issues:
            text = f"Nothing is open: all {_plural(len(q.issue_rows(self.store)), 'issue')} are resolved (as of {_t(self.now)})."
            return Answer(question, "open", text, {"issues": []}, {"active": [], "needs_human": []})
        lines = [f"{_plural(len(issues), 'active issue')} as of {_t(self.now)}; "
                 f"{len(human)} {'needs' if len(human) == 1 else 'need'} a human."]
        if human:
            lines.append("Needs a human:")
            for i in human:
                e = latest.get(i["id"], {})
                lines.append(f"- {i['id']} {_clip(i['title'], 90)} ({i['service'] or i['source']}), since {_t(e.get('ts'))}: "
                             f"{_clip(e.get('reason') or 'escalated', 160)}")
        if others:
            lines.append("In progress:" if human else "Open:")
            for i in others[: self.settings.max_items]:
                e = latest.get(i["id"], {})
                extra = " (early warning)" if i["kind"] == "warning" else ""
                lines.append(f"- {i['id']} [{i['status']} since {_t(e.get('ts'))}]{extra} {_clip(i['title'], 90)} "
                             f"({i['service'] or i['source']}){'; reopened after a resolution' if i['reopened'] else ''}")
        data = {"active": [i["id"] for i in issues], "needs_human": [i["id"] for i in human]}
        return Answer(question, "open", "\n".join(lines), {"issues": data["active"]}, data)

    # -- one issue, and why

    def _intent_issue(self, question: str, p: Parsed) -> Answer:
        iid, missing = self._issue_id(p)
        if iid is None:
            known = [i["id"] for i in q.issue_rows(self.store)]
            span = f" (issues run {known[0]} … {known[-1]})" if known else " (it holds no issues yet)"
            text = (missing or "Which issue? Name one, like ISS-0001.").rstrip(".") + span + "."
            return Answer(question, "issue", text, {"issues": []})
        issue = next(i for i in q.issue_rows(self.store) if i["id"] == iid)
        events = q.issue_event_rows(self.store, iid)
        chains = q.chain_rows(self.store, iid)
        gates = {g["chain_id"]: g for g in q.gate_rows(self.store, iid)}
        fixes = q.fix_rows(self.store, iid)
        verifs = q.verification_rows(self.store, iid)
        archive = [a for a in q.archive_rows(self.store) if a["issue_id"] == iid]
        rules = [r for r in q.learned_rule_rows(self.store) if r.get("issue_id") == iid]
        occ = q.occurrence_rows(self.store, iid)
        resolutions, recurrences = transitions(events)
        refs = {"issues": [iid], "signals": [], "chains": [c["id"] for c in chains], "fixes": [f["id"] for f in fixes],
                "rules": [r["id"] for r in rules]}
        last_event = events[-1] if events else {}
        lines = [f"{iid} — {issue['title']} ({issue['kind']}, {issue['source'] or '?'}"
                 f"{', ' + issue['service'] if issue['service'] else ''})",
                 f"Status: {issue['status']} since {_t(last_event.get('ts'))}"
                 + (f" ({_clip(last_event.get('reason'), 200)})" if issue["status"] == "needs-human" and last_event.get("reason") else "")
                 + f". First detected {_t(issue['opened_at'])}"
                 f"{' (signal ' + issue['first_signal'] + ')' if issue['first_signal'] else ''}; "
                 f"{_plural(len(occ), 'occurrence')}"
                 f"{'; reopened ' + _plural(len(recurrences), 'time') if recurrences else ''}."]
        if issue["first_signal"]:
            refs["signals"].append(issue["first_signal"])
        passed = [c for c in chains if c["id"] in gates and gate_all_passed(gates[c["id"]])]
        shown = (passed or chains or [None])[-1]
        borrowed = next((e["chain_id"] for e in reversed(events) if e.get("chain_id")), None) if shown is None else None
        if borrowed:
            # grouped into another issue's chain (one of its links): that chain explains this issue too
            owner = next((c for c in q.chain_rows(self.store) if c["id"] == borrowed), None)
            if owner is not None:
                shown = owner
                gates = {g["chain_id"]: g for g in q.gate_rows(self.store) if g["chain_id"] == borrowed}
                fixes = [f for f in q.fix_rows(self.store, owner["issue_id"]) if f["chain_id"] == borrowed]
                verifs = [v for v in q.verification_rows(self.store, owner["issue_id"])]
                refs["chains"].append(borrowed)
                refs["fixes"] += [f["id"] for f in fixes]
                why = next((e.get("reason") for e in reversed(events) if e.get("chain_id") == borrowed and e.get("reason")), "")
                lines.append(f"It is one of the links of {owner['issue_id']}'s chain {borrowed}"
                             + (f": {_clip(why, 160)}" if why else "") + ".")
        if shown is None:
            lines.append("Why: no chain has been drafted for it yet" +
                         (f" (latest step: {last_event.get('event')}: {_clip(last_event.get('reason'), 160)})."
                          if last_event.get("reason") else "."))
        else:
            g = gates.get(shown["id"])
            verdict = "not judged by the gate yet" if g is None else ("gate passed" if gate_all_passed(g) else "gate rejected")
            lines.append(f"Why (chain {shown['id']}, {verdict}):")
            lines += chain_in_words(shown["chain"])
            if g is not None:
                checks = g["checks"]
                failed = [f"{n}: {(checks.get(n) or {}).get('reason', '')}" for n in ("reproduce", "archive", "completeness", "counterfactual")
                          if not (checks.get(n) or {}).get("passed")]
                arch = checks.get("archive") or {}
                if failed:
                    lines.append("Gate: rejected — " + "; ".join(_clip(f, 160) for f in failed) + ".")
                else:
                    lines.append("Gate: passed all four checks (reproduce, archive, completeness, counterfactual)"
                                 + (f"; the archive check escalated it: {_clip(arch.get('reason'), 160)}" if arch.get("escalated") else "")
                                 + ".")
            spec = shown["chain"].get("fix")
            fix = next((f for f in reversed(fixes) if f["chain_id"] == shown["id"]), None)
            if spec:
                lines.append(f"Fix: {spec.get('action')} ({spec.get('effect')}) — {spec.get('description') or 'no description'}"
                             + (f"; {fix['id']} is {fix['status']}" if fix else "; not planned yet") + ".")
            if fix:
                steps = [v for v in verifs if v["fix_id"] == fix["id"]]
                if steps:
                    lines.append("Verification: " + "; ".join(
                        f"{v['step']} {'passed' if v['passed'] else 'FAILED'}{' (' + _clip(v['detail'], 80) + ')' if v['detail'] else ''}"
                        for v in steps) + ".")
                else:
                    lines.append("Verification: none recorded yet.")
        for c in chains:
            if shown is not None and c["id"] == shown["id"]:
                continue
            g = gates.get(c["id"])
            state = "not judged" if g is None else ("passed" if gate_all_passed(g) else "rejected")
            outcome = [a["outcome"] for a in archive if a["chain_id"] == c["id"]]
            why = ""
            if g is not None and not gate_all_passed(g):
                bad = [n for n in ("reproduce", "archive", "completeness", "counterfactual") if not (g["checks"].get(n) or {}).get("passed")]
                why = " by " + ", ".join(bad)
            lines.append(f"Earlier chain {c['id']}: {state}{why}{' (archived: ' + ', '.join(outcome) + ')' if outcome else ''}"
                         f" — root: {_clip(c['root_statement'], 120)}")
        for r in resolutions:
            lines.append(f"Resolved {_t(r['ts'])}{' via ' + r['chain_id'] if r.get('chain_id') else ''}"
                         f"{' and ' + r['fix_id'] if r.get('fix_id') else ''}: {_clip(r.get('reason') or r['event'], 100)}.")
        for rec in recurrences:
            if rec.get("signal_id"):
                refs["signals"].append(rec["signal_id"])
            lines.append(f"Recurred {_t(rec['ts'])}{' (signal ' + rec['signal_id'] + ')' if rec.get('signal_id') else ''}: "
                         f"{_clip(rec.get('reason') or 'the failure came back', 140)}")
        held = self._why_not_held(iid, chains, gates, archive)
        if held:
            lines.append(held)
        for r in rules:
            lines.append(f"Learned from it: rule {r['id']} ({r['kind']}, {r['status']}): {_clip(r['explanation'], 160)}")
        data = {"issue": iid, "status": issue["status"], "chain": shown["id"] if shown else None,
                "gate_passed": gate_all_passed(gates[shown["id"]]) if shown and shown["id"] in gates else None,
                "fix": next((f["id"] for f in reversed(fixes) if shown and f["chain_id"] == shown["id"]), None),
                "recurrences": len(recurrences)}
        return Answer(question, "issue", "\n".join(lines), refs, data)

    def _why_not_held(self, iid: str, chains: Sequence[dict[str, Any]], gates: dict[str, dict[str, Any]],
                      archive: Sequence[dict[str, Any]]) -> str | None:
        """When a fix did not hold and a later chain found a deeper root: the link that re-created the old root."""
        failed = [a for a in archive if a["outcome"] == "did-not-hold"]
        if not failed:
            return None
        by_id = {c["id"]: c for c in chains}
        parts = []
        for a in failed:
            old = by_id.get(a["chain_id"])
            if old is None:
                continue
            old_root = old["chain"]["nodes"][[n["id"] for n in old["chain"]["nodes"]].index(old["chain"]["root"])]
            later = [c for c in chains if c["created_at"] > old["created_at"] and c["id"] in gates
                     and gate_all_passed(gates[c["id"]])]
            for c in later:
                ch = c["chain"]
                match = next((n for n in ch["nodes"] if n["id"] != ch["root"] and
                              (_norm(n.get("statement")) == _norm(old_root.get("statement"))
                               or (n.get("observe") and n.get("observe") == old_root.get("observe")))), None)
                if match is None:
                    continue
                link = next((lk for lk in ch["links"] if lk["effect"] == match["id"]), None)
                parts.append(f"Why the fix of {a['chain_id']} did not hold: it removed \"{_clip(old_root['statement'], 100)}\", "
                             f"but {c['id']} found the deeper cause \"{_clip(c['root_statement'], 120)}\""
                             + (f", which brings it back: {link['mechanism']}." if link else "."))
                break
            else:
                parts.append(f"The fix of {a['chain_id']} did not hold; no deeper chain has passed the gate yet.")
        return "\n".join(parts) if parts else None

    # -- what broke lately

    def _window(self, p: Parsed, default_h: float) -> tuple[datetime, datetime, str]:
        now = self.now
        if p.window_s:
            return now - timedelta(seconds=p.window_s), now, f"the {_dur(p.window_s)} up to {_t(now)}"
        if p.today:
            start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            return start, now, f"{start.date().isoformat()} up to {_t(now)}"
        return now - timedelta(hours=default_h), now, f"the {_dur(default_h * 3600)} up to {_t(now)}"

    def _intent_recent(self, question: str, p: Parsed) -> Answer:
        if self.now is None:
            return Answer(question, "recent", "The store holds no signals yet.", {"issues": [], "signals": []})
        since, until, label = self._window(p, self.settings.recent_window_h)
        rows = q.genuine_between(self.store, since, until)
        counts = q.signal_counts(self.store, since, until)
        by_issue: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_issue.setdefault(r["issue_id"] or "(no issue)", []).append(r)
        issues = {i["id"]: i for i in q.issue_rows(self.store)}
        events = [e for e in q.issue_event_rows(self.store) if since <= e["ts"] <= until]
        resolved = sorted({e["issue_id"] for e in events if e["status"] == "resolved"})
        noise = counts.get("noise", 0)
        if not rows:
            text = (f"Nothing broke in {label}: no genuine failure signal"
                    + (f" ({_plural(noise, 'noise signal')} discarded)." if noise else "."))
            if resolved:
                text += f" Resolved in that time: {', '.join(resolved)}."
            return Answer(question, "recent", text, {"issues": resolved, "signals": []},
                          {"since": since, "until": until, "genuine": 0, "noise": noise, "issues": [], "resolved": resolved})
        lines = [f"In {label}: {_plural(len(rows), 'genuine failure signal')} across "
                 f"{_plural(len([k for k in by_issue if k != '(no issue)']), 'issue')}"
                 + (f", and {_plural(noise, 'noise signal')} discarded." if noise else ".")]
        sig_refs = []
        for iid, rs in by_issue.items():
            kinds = ", ".join(f"{n} {v}" for v, n in sorted(_count(r["verdict"] for r in rs).items()))
            issue = issues.get(iid)
            title = _clip(issue["title"] if issue else rs[0]["message"], 100)
            status = f" — now {issue['status']}" if issue else ""
            sig_refs += [r["signal_id"] for r in rs]
            shown_ids = ", ".join(r["signal_id"] for r in rs[:5]) + (" …" if len(rs) > 5 else "")
            lines.append(f"- {iid}: {title} ({rs[0]['source']}{'/' + rs[0]['service'] if rs[0]['service'] else ''}); "
                         f"{kinds}; first {_t(rs[0]['ts'])}, last {_t(rs[-1]['ts'])} [{shown_ids}]{status}")
        if resolved:
            lines.append(f"Resolved in that time: {', '.join(resolved)}.")
        ids = [k for k in by_issue if k != "(no issue)"]
        return Answer(question, "recent", "\n".join(lines), {"issues": ids + [r for r in resolved if r not in ids],
                                                              "signals": sig_refs},
                      {"since": since, "until": until, "genuine": len(rows), "noise": noise, "issues": ids,
                       "resolved": resolved})

    # -- recurrences

    def _intent_recurring(self, question: str, p: Parsed) -> Answer:
        rep = self.report()
        want, missing = self._issue_id(p) if (p.issue_num or p.chain or p.fix) else (None, None)
        if missing:
            return Answer(question, "recurring", missing, {"issues": []})
        recs = [r for r in rep["recurrences"] if want is None or r["issue"] == want]
        repeats = [r for r in rep["repeat_failure_modes"] if want is None or r["issue"] == want]
        if not recs and not repeats:
            text = (f"{want} has not recurred." if want else "No failure mode has recurred.")
            text += f" Repeat issues: {rep['repeat_issues']} (goal 0)."
            return Answer(question, "recurring", text, {"issues": [want] if want else []},
                          {"repeat_issues": rep["repeat_issues"], "recurrences": 0})
        issues = {i["id"]: i for i in q.issue_rows(self.store)}
        by_issue: dict[str, list[dict[str, Any]]] = {}
        for r in recs:
            by_issue.setdefault(r["issue"], []).append(r)
        lines = [f"{_plural(len(by_issue), 'failure mode')} recurred "
                 f"({_plural(len(recs), 'recurrence')}); repeat issues after a gate-validated fix: {rep['repeat_issues']} (goal 0)."]
        shown = list(by_issue.items())[-self.settings.max_items:]
        if len(shown) < len(by_issue):
            lines.append(f"The {len(shown)} that recurred most recently:")
        archive = q.archive_rows(self.store)
        refs = {"issues": [], "signals": [], "chains": []}
        for iid, rs in shown:
            issue = issues.get(iid, {})
            refs["issues"].append(iid)
            refs["signals"] += [r["signal"] for r in rs if r.get("signal")]
            lines.append(f"- {iid} {_clip(issue.get('title'), 90)}: recurred {_plural(len(rs), 'time')} "
                         f"({', '.join(_t(r['ts']) + (' ' + r['signal'] if r.get('signal') else '') for r in rs)}).")
            lines.append("  " + self._recurrence_story(iid, rs, [a for a in archive if a["issue_id"] == iid]))
        return Answer(question, "recurring", "\n".join(lines), refs,
                      {"repeat_issues": rep["repeat_issues"], "recurrences": len(recs), "issues": refs["issues"],
                       "repeat_fingerprints": [r["fingerprint"] for r in repeats]})

    def _recurrence_story(self, iid: str, recs: Sequence[dict[str, Any]], archive: Sequence[dict[str, Any]]) -> str:
        events = q.issue_event_rows(self.store, iid)
        resolutions, _ = transitions(events)
        chains = q.chain_rows(self.store, iid)
        gates = {g["chain_id"]: g for g in q.gate_rows(self.store, iid)}
        first = recs[0]
        before = [r for r in resolutions if r["ts"] <= first["ts"]]
        prior = before[-1] if before else None
        parts = []
        if first.get("kind") == "fix-did-not-hold":
            parts.append(f"Its fix {first.get('fix') or ''} did not hold in verification"
                         + (f": {_clip(first.get('reason'), 160)}" if first.get("reason") else "") + ".")
        elif prior is None:
            parts.append("It was never resolved before it came back.")
        elif prior.get("chain_id") and prior["chain_id"] in gates and gate_all_passed(gates[prior["chain_id"]]):
            chain = next((c for c in chains if c["id"] == prior["chain_id"]), None)
            parts.append(f"It had been resolved {_t(prior['ts'])} through chain {prior['chain_id']}"
                         + (f" (root: \"{_clip(chain['root_statement'], 100)}\")" if chain else "")
                         + (f" with fix {prior['fix_id']}" if prior.get("fix_id") else "") + ", and that fix did not hold.")
        else:
            parts.append(f"It had been resolved {_t(prior['ts'])} ({_clip(prior.get('reason') or prior['event'], 60)}) "
                         "without a gate-validated chain, so no root cause had been removed.")
        held = self._why_not_held(iid, chains, gates, archive)
        if held:
            parts.append(held)
        esc = [r for r in recs if r["escalated"]]
        if esc:
            parts.append(f"The re-analysis was escalated by the archive check (matched {esc[0]['matched']}): "
                         "the same root could not be accepted twice.")
        elif not any(r["reanalysed"] for r in recs):
            parts.append("It has not been re-analysed yet.")
        fixes = q.fix_rows(self.store, iid)
        failed_steps = [v for v in q.verification_rows(self.store, iid) if not v["passed"]]
        if failed_steps:
            v = failed_steps[-1]
            parts.append(f"Verification of {v['fix_id']} failed at step {v['step']}: {_clip(v['detail'], 120)}.")
        if fixes and not held and not failed_steps and prior and prior.get("chain_id"):
            parts.append(f"Current fix: {fixes[-1]['id']} ({fixes[-1]['status']}).")
        return " ".join(parts)

    # -- the figures

    def _intent_metrics(self, question: str, p: Parsed) -> Answer:
        r = self.report()
        lines = []
        cyc = r["latest_cycle"]
        mttr = r["mttr_hours_latest_cycle"]
        if cyc:
            lines.append(f"MTTR in the latest cycle ({cyc['cycle']}, {cyc['kind']}): "
                         + (f"{mttr:.2f} h over {_plural(len(cyc['resolved']), 'resolved issue')} ({', '.join(cyc['resolved'])})."
                            if mttr is not None else "no issue was resolved in it."))
            older = [c for c in r["mttr_per_cycle"][:-1] if c["mttr_hours"] is not None][-5:]
            if older:
                lines.append("Earlier cycles: " + ", ".join(f"{c['cycle']} {c['mttr_hours']:.2f} h" for c in older) + ".")
        else:
            lines.append("MTTR over the store's lifetime (no cycles recorded): "
                         + (f"{mttr:.2f} h." if mttr is not None else "no issue resolved yet."))
        reps = r["repeat_failure_modes"]
        lines.append(f"Repeat issues: {r['repeat_issues']} (goal 0)"
                     + (": " + ", ".join(f"{x['issue']} (resolved {_t(x['resolved_at'])}, back {_t(x['recurred_at'])})" for x in reps)
                        if reps else "") + ".")
        classes = r["failure_classes_eliminated"]
        lines.append(f"Learning velocity: {r['learning_velocity_per_week']:.2f} failure classes eliminated per week "
                     f"({_plural(len(classes), 'class', 'classes')} over {r['lifetime']['days']:.1f} days"
                     + (": " + "; ".join(f"{c['class']} by {c['issue']}" for c in classes) if classes else "") + ").")
        lines.append(f"Issues tracked {r['issues_tracked']}, with a formal RCA {r['issues_with_formal_rca']}, "
                     f"active {r['active_issues']}; recurrences escalated by the archive check {r['recurrences_escalated']}.")
        lines.append(f"Signals: {r['genuine_signals']} genuine, {r['noise_signals']} noise.")
        refs = {"issues": sorted({x["issue"] for x in reps} | set(cyc["resolved"] if cyc else []))}
        keys = ("issues_tracked", "issues_with_formal_rca", "active_issues", "mttr_hours_latest_cycle", "repeat_issues",
                "recurrences_escalated", "learning_velocity_per_week", "noise_signals", "genuine_signals")
        return Answer(question, "metrics", "\n".join(lines), refs, {k: r[k] for k in keys})

    # -- what changed before a failure

    def _intent_changes(self, question: str, p: Parsed) -> Answer:
        iid, missing = self._issue_id(p) if (p.issue_num or p.chain or p.fix) else (None, None)
        if missing:
            return Answer(question, "changes", missing, {"issues": []})
        issues = [i for i in q.issue_rows(self.store) if i["kind"] == "failure"] or q.issue_rows(self.store)
        events = q.issue_event_rows(self.store)
        if iid is None:
            if self.last_issue and not (p.issue_num or p.chain or p.fix):
                iid = self.last_issue
            else:
                starts = [(e["ts"], e["issue_id"]) for e in events
                          if e["event"] in ("opened", "recurrence", "reopened") and e["issue_id"] in {i["id"] for i in issues}]
                if not starts:
                    return Answer(question, "changes", "No failure has been recorded yet.", {"issues": []})
                iid = max(starts)[1]
        mine = [e for e in events if e["issue_id"] == iid]
        _, recurrences = transitions(mine)
        issue = next(i for i in q.issue_rows(self.store) if i["id"] == iid)
        if recurrences:
            at, signal, what = recurrences[-1]["ts"], recurrences[-1].get("signal_id"), "recurred"
        else:
            at, signal, what = issue["opened_at"], issue["first_signal"], "was first detected"
        window = timedelta(hours=self.settings.change_window_h)
        if p.window_s:
            window = timedelta(seconds=p.window_s)
        before = q.signals_between(self.store, at - window, at, limit=5000)
        after = [s for s in q.signals_between(self.store, at, at + window, sources=["probe"], limit=500)
                 if not issue["service"] or s["service"] in (None, issue["service"])]
        changes = [s for s in before if s["id"] != signal and s["verdict"] not in ("new", "ongoing", "recurrence")
                   and (s["source"] == "probe" or any(rx.search(s["message"]) for rx in self.book.change_patterns))]
        warnings = [s for s in before if s["verdict"] in ("new", "ongoing") and s["issue_id"]
                    and s["issue_id"] != iid and self._is_warning(s["issue_id"])]
        lines = [f"{iid} {what} at {_t(at)}{' (signal ' + signal + ')' if signal else ''}: {_clip(issue['title'], 100)}."]
        refs = {"issues": [iid], "signals": [signal] if signal else []}
        n = self.settings.max_items
        if changes:
            lines.append(f"Changes in the {_dur(window.total_seconds())} before it:")
            for s in changes[-n:]:
                refs["signals"].append(s["id"])
                lines.append(f"- {_t(s['ts'])} {s['id']} {s['source']}{'/' + s['service'] if s['service'] else ''}: "
                             f"{_clip(s['message'], 140)} ({_dur((at - s['ts']).total_seconds())} before)")
        else:
            lines.append(f"No deploy, config change, restart or probe fact was recorded in the {_dur(window.total_seconds())} before it.")
        if warnings:
            lines.append("Early warnings before it:")
            for s in warnings[-n:]:
                refs["signals"].append(s["id"])
                refs["issues"].append(s["issue_id"])
                lines.append(f"- {_t(s['ts'])} {s['id']} opened {s['issue_id']}: {_clip(s['message'], 100)} "
                             f"({_dur((at - s['ts']).total_seconds())} before)")
        if after:
            lines.append("State read by probes after it:")
            for s in after[:n]:
                refs["signals"].append(s["id"])
                lines.append(f"- {_t(s['ts'])} {s['id']}: {_clip(s['message'], 140)}")
        chain = next((c for c in reversed(q.chain_rows(self.store, iid)) if c["passed"]), None)
        if chain:
            lines.append(f"Root cause in chain {chain['id']}: {chain['root_statement']}.")
        data = {"issue": iid, "at": at, "changes": [s["id"] for s in changes], "warnings": [s["id"] for s in warnings],
                "probes_after": [s["id"] for s in after]}
        return Answer(question, "changes", "\n".join(lines), refs, data)

    def _is_warning(self, iid: str) -> bool:
        return any(i["id"] == iid and i["kind"] == "warning" for i in q.issue_rows(self.store))

    # -- learned rules

    def _intent_learned(self, question: str, p: Parsed) -> Answer:
        want, missing = self._issue_id(p) if (p.issue_num or p.chain or p.fix) else (None, None)
        if missing:
            return Answer(question, "learned", missing, {"issues": []})
        rules = [r for r in q.learned_rule_rows(self.store) if want is None or r.get("issue_id") == want]
        firings = q.learned_rule_firings(self.store)
        if not rules:
            text = f"No rule was learned from {want}." if want else "No rule has been learned yet."
            return Answer(question, "learned", text, {"issues": [want] if want else [], "rules": []}, {"rules": []})
        lead = {x["rule"]: x for x in self.report()["detection_lead_time"]["rules"]}
        lines = [f"{_plural(len(rules), 'learned rule')}{' from ' + want if want else ''}:"]
        refs = {"issues": [], "rules": [], "chains": [], "signals": []}
        for r in rules:
            refs["rules"].append(r["id"])
            if r.get("issue_id"):
                refs["issues"].append(r["issue_id"])
            if r.get("chain_id"):
                refs["chains"].append(r["chain_id"])
            fired = [f for f in firings if f["rule_id"] == r["id"]]
            source = (f"from {r['issue_id'] or 'no issue'}" + (f" via chain {r['chain_id']}" if r.get("chain_id") else ""))
            lines.append(f"- {r['id']} ({r['kind']}, {r['status']}), learned {source} on {_t(r['created_at'])}: "
                         f"{_clip(r['explanation'], 200)}")
            if fired:
                refs["signals"] += [f["signal_id"] for f in fired]
                opened = sorted({f["issue_id"] for f in fired if f["issue_id"]})
                lt = lead.get(r["id"], {})
                lines.append(f"  fired {_plural(len(fired), 'time')} (last {_t(fired[-1]['ts'])}, signal {fired[-1]['signal_id']})"
                             + (f", opening {', '.join(opened)}" if opened else "")
                             + (f"; warned {_dur(lt['mean_lead_time_s'])} before the failure on average"
                                if lt.get("mean_lead_time_s") is not None else "") + ".")
                refs["issues"] += opened
            else:
                lines.append("  has not fired yet.")
        refs["issues"] = list(dict.fromkeys(refs["issues"]))
        return Answer(question, "learned", "\n".join(lines), refs,
                      {"rules": [{"id": r["id"], "kind": r["kind"], "issue": r.get("issue_id"), "chain": r.get("chain_id"),
                                  "fired": sum(1 for f in firings if f["rule_id"] == r["id"])} for r in rules]})

    # -- noise

    def _intent_noise(self, question: str, p: Parsed) -> Answer:
        r = self.report()
        noise, genuine, info = r["noise_signals"], r["genuine_signals"], r["info_signals"]
        failing = noise + genuine
        if not failing and not info:
            return Answer(question, "noise", "No signal has been triaged yet.", {"signals": []}, {"noise": 0, "genuine": 0})
        pct = f" ({100 * noise / failing:.0f}%)" if failing else ""
        lines = [f"{noise} of {failing} failure-like signals were noise{pct}: kept in history, no issue opened; "
                 f"{genuine} were genuine and {info} more were informational."]
        per = [(src, d) for src, d in r["noise_by_source"].items() if d["noise"] or d["genuine"]]
        if per:
            lines.append("By source: " + "; ".join(
                f"{src} {d['noise']} noise / {d['genuine']} genuine ({100 * d['noise_ratio']:.0f}% noise)" for src, d in per) + ".")
        groups = q.noise_groups(self.store, limit=self.settings.max_items // 2 or 1)
        refs = {"signals": []}
        if groups:
            lines.append("The biggest kinds of noise:")
            for g in groups:
                refs["signals"].append(g["example"])
                lines.append(f"- {g['n']} × {_clip(g['template'], 110)} ({g['source']}"
                             f"{'/' + g['service'] if g['service'] else ''}; rule {g['rule']}; e.g. {g['example']})")
        return Answer(question, "noise", "\n".join(lines), refs,
                      {"noise": noise, "genuine": genuine, "info": info,
                       "noise_ratio": round(noise / failing, 4) if failing else None,
                       "by_source": {src: d for src, d in r["noise_by_source"].items()}})


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


def make_answerer(store: Store, cfg: Any, *, offline: bool = False, now: datetime | None = None):
    """The model-backed answerer when analysis.model is configured (and not `offline`), else the offline one."""
    settings = ChatSettings.from_config(cfg)
    if cfg.analysis.model is None:
        return OfflineAnswerer(store, now=now, settings=settings)
    if offline:
        return OfflineAnswerer(store, now=now, settings=settings, footer=OFFLINE_BY_CHOICE_FOOTER)
    from agent.chat_agent import ModelAnswerer, build_model

    m = cfg.analysis.model
    return ModelAnswerer(store, build_model(cfg), model_name=m.model, now=now, settings=settings,
                         endpoint=m.base_url or "api.openai.com")
