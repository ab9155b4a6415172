"""The HTML report: one self-contained file (inline CSS, inline SVG drawn here, a few lines of inline JS).

Charts and chain graphs are drawn server-side as SVG strings by the pure
functions below, every text in them escaped (signal messages are untrusted),
and poured into agent/templates/report.html.j2. Nothing refers to a network
resource, so the file opens anywhere, offline.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict, deque
from datetime import datetime
from typing import Any, Sequence

from markupsafe import Markup, escape

from agent.models import rfc3339
from agent.report import CHECKS, compute_report, gate_all_passed
from agent.store import Store
from agent.store import report as q

PALETTE = {"opened": "#d9534f", "resolved": "#2e8b57", "active": "#e6a23c", "noise": "#9aa5b1",
           "genuine": "#c0392b", "mttr": "#3867d6", "eliminated": "#2e8b57"}


# --------------------------------------------------------------------------- charts


def _nice_max(value: float, integer: bool = False) -> float:
    """A round axis top at or above value; for counts, a multiple of 4 so the 4 grid steps are whole numbers."""
    if value <= 0:
        return 4.0 if integer else 1.0
    if integer:
        return float(max(4, math.ceil(value / 4) * 4)) if value <= 40 else _nice_max(value / 4) * 4
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * exp:
            return m * exp
    return 10 * exp


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1000 else f"{v:,.0f}"


def chart(chart_id: str, title: str, labels: Sequence[str], bars: Sequence[tuple[str, Sequence[float]]] = (),
          lines: Sequence[tuple[str, Sequence[float]]] = (), stacked: bool = False, unit: str = "",
          width: int = 640, height: int = 240) -> Markup:
    """A bar chart (grouped or stacked) with optional line series over the same x labels, as inline SVG."""
    ml, mr, mt, mb = 48, 12, 28, 46
    pw, ph = width - ml - mr, height - mt - mb
    n = max(len(labels), 1)
    if stacked and bars:
        top = max((sum(s[1][i] for s in bars) for i in range(len(labels))), default=0)
    else:
        top = max((v for _, vals in bars for v in vals), default=0)
    top = max([top] + [v for _, vals in lines for v in vals if v is not None])
    whole = all(float(v).is_integer() for _, vals in list(bars) + list(lines) for v in vals if v is not None)
    ymax = _nice_max(top, integer=whole)
    y = lambda v: mt + ph - (v / ymax) * ph  # noqa: E731
    slot = pw / n
    out = [f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}">',
           f'<text class="chart-title" x="{ml}" y="16">{escape(title)}</text>']
    for k in range(5):
        v = ymax * k / 4
        out.append(f'<line class="grid" x1="{ml}" x2="{width - mr}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                   f'<text class="tick" x="{ml - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_fmt(v)}{escape(unit)}</text>')
    every = max(1, math.ceil(n / 12))
    for i, label in enumerate(labels):
        if i % every == 0:
            out.append(f'<text class="tick" x="{ml + slot * (i + 0.5):.1f}" y="{height - mb + 16}" '
                       f'text-anchor="middle">{escape(label)}</text>')
    nb = len(bars)
    for i in range(len(labels)):
        base = 0.0
        for j, (name, vals) in enumerate(bars):
            v = vals[i] or 0
            if stacked:
                x, w = ml + slot * i + slot * 0.15, slot * 0.7
                y0, y1 = y(base + v), y(base)
                base += v
            else:
                w = slot * 0.7 / nb
                x = ml + slot * i + slot * 0.15 + j * w
                y0, y1 = y(v), y(0)
            if v:
                out.append(f'<rect class="bar s-{escape(name)}" x="{x:.1f}" y="{y0:.1f}" width="{max(w, 1):.1f}" '
                           f'height="{max(y1 - y0, 0):.1f}" fill="{PALETTE.get(name, "#777")}">'
                           f'<title>{escape(labels[i])}: {escape(name)} {_fmt(v)}{escape(unit)}</title></rect>')
    for name, vals in lines:
        pts = [(ml + slot * (i + 0.5), y(v)) for i, v in enumerate(vals) if v is not None]
        if pts:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
            out.append(f'<polyline class="line s-{escape(name)}" points="{path}" fill="none" '
                       f'stroke="{PALETTE.get(name, "#333")}" stroke-width="2"/>')
            out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{PALETTE.get(name, "#333")}"/>' for px, py in pts]
    lx = ml
    for name, _ in list(bars) + list(lines):
        out.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{PALETTE.get(name, "#777")}"/>'
                   f'<text class="legend" x="{lx + 14}" y="{height - 5}">{escape(name)}</text>')
        lx += 14 + 8 * len(name) + 18
    if not labels:
        out.append(f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">no data yet</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _label(t: datetime, unit: str) -> str:
    return t.strftime("%m-%d %H:00") if unit == "hour" else t.strftime("%m-%d")


# --------------------------------------------------------------------------- chain graphs


def _wrap(text: str, width: int, max_lines: int) -> list[str]:
    lines = textwrap.wrap(text, width) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, width - 1)] + "…"
    return lines


def _observe_text(observe: dict[str, Any] | None) -> str:
    if not observe:
        return "not observed"
    where = observe.get("source", "?") + (f"/{observe['service']}" if observe.get("service") else "")
    if observe.get("match") is not None:
        return f"{where} ~ {observe['match']}"
    return f"{where}: {observe.get('metric')} {observe.get('op')} {observe.get('value')}"


def chain_layers(chain: dict[str, Any]) -> list[list[str]]:
    """Node ids by distance from the symptom, walking links from effect to cause; unreachable nodes last."""
    causes: dict[str, list[str]] = defaultdict(list)
    for link in chain.get("links", []):
        causes[link["effect"]].append(link["cause"])
    depth = {chain["symptom"]: 0}
    todo = deque([chain["symptom"]])
    while todo:
        cur = todo.popleft()
        for c in causes.get(cur, []):
            if c not in depth:
                depth[c] = depth[cur] + 1
                todo.append(c)
    rows: dict[int, list[str]] = defaultdict(list)
    last = max(depth.values(), default=0) + 1
    for node in chain.get("nodes", []):
        rows[depth.get(node["id"], last)].append(node["id"])
    return [rows[k] for k in sorted(rows)]


def chain_svg(chain: dict[str, Any], svg_id: str = "") -> Markup:
    """The why-chain as a graph: symptom on top, each cause below its effect, arrows cause -> effect with the mechanism."""
    nodes = {n["id"]: n for n in chain.get("nodes", [])}
    layers = chain_layers(chain)
    box_w, gap_x, pad, line_h, label_w = 340, 40, 10, 15, 300
    wrapped = {nid: _wrap(n.get("statement", ""), 50, 4) for nid, n in nodes.items()}
    box_h = {nid: pad * 2 + line_h * (len(lines) + 1) + (line_h if nid == chain.get("root") else 0)
             for nid, lines in wrapped.items()}
    widest = max((len(r) for r in layers), default=1)
    width = widest * box_w + (widest - 1) * gap_x + 2 * pad + label_w
    pos: dict[str, tuple[float, float]] = {}
    yy = pad
    for row in layers:
        row_w = len(row) * box_w + (len(row) - 1) * gap_x
        x0 = pad + (widest * box_w + (widest - 1) * gap_x - row_w) / 2
        for k, nid in enumerate(row):
            pos[nid] = (x0 + k * (box_w + gap_x), yy)
        yy += max(box_h[n] for n in row) + 78
    height = int(yy - 78 + pad + 4)
    marker = escape(f"arrow-{svg_id or chain.get('id', 'chain')}")
    out = [f'<svg class="chain-graph" id="{escape(svg_id)}" data-chain="{escape(chain.get("id", ""))}" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="why-chain {escape(chain.get("id", ""))}">',
           f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    for link in chain.get("links", []):
        if link["cause"] not in pos or link["effect"] not in pos:
            continue
        cx, cy = pos[link["cause"]]
        ex, ey = pos[link["effect"]]
        x1, y1 = cx + box_w / 2, cy
        x2, y2 = ex + box_w / 2, ey + box_h[link["effect"]]
        if cy <= ey:  # a cause drawn above its effect (a cycle or a skip back): route from its bottom instead
            y1 = cy + box_h[link["cause"]]
            y2 = ey
        out.append(f'<line class="link" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#555" '
                   f'stroke-width="1.5" marker-end="url(#{marker})"/>')
        mx, my = (x1 + x2) / 2 + 10, (y1 + y2) / 2
        mech = _wrap(link.get("mechanism", ""), 60, 3)
        first = my - (len(mech) - 1) * 6.5
        spans = "".join(f'<tspan x="{mx:.1f}" y="{first + i * 13:.1f}">{escape(t)}</tspan>' for i, t in enumerate(mech))
        out.append(f'<text class="mechanism">{spans}</text>')
    for nid, (x, y) in pos.items():
        node = nodes[nid]
        role = "symptom" if nid == chain.get("symptom") else "root" if nid == chain.get("root") else "cause"
        out.append(f'<g class="node {role}" data-node="{escape(nid)}">'
                   f'<title>{escape(nid)}: {escape(_observe_text(node.get("observe")))}</title>'
                   f'<rect x="{x:.1f}" y="{y:.1f}" width="{box_w}" height="{box_h[nid]}" rx="6"/>')
        ty = y + pad + line_h - 3
        tag = {"symptom": "SYMPTOM", "root": "ROOT CAUSE"}.get(role, "WHY")
        out.append(f'<text class="node-tag" x="{x + pad:.1f}" y="{ty:.1f}">{tag} · {escape(nid)}</text>')
        for line in wrapped[nid]:
            ty += line_h
            out.append(f'<text class="statement" x="{x + pad:.1f}" y="{ty:.1f}">{escape(line)}</text>')
        if role == "root":
            ty += line_h
            out.append(f'<text class="category" x="{x + pad:.1f}" y="{ty:.1f}">category: '
                       f'{escape(node.get("category") or "none")}</text>')
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))


# --------------------------------------------------------------------------- the page


def _issue_details(store: Store, summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    chains = {c["id"]: c for c in q.chain_rows(store)}
    gates: dict[str, dict[str, Any]] = {}
    for g in q.gate_rows(store):
        gates[g["chain_id"]] = g
    fixes = {f["id"]: f for f in q.fix_rows(store)}
    verifs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in q.verification_rows(store):
        verifs[v.get("fix_id") or ""].append(v)
    archive: dict[str, list[str]] = defaultdict(list)
    for a in q.archive_rows(store):
        archive[a["chain_id"]].append(a["outcome"])
    out = []
    for s in summaries:
        if not s["chain"] or s["chain_issue"] != s["id"]:  # no chain, or another issue's chain: linked, not redrawn
            continue
        c = chains[s["chain"]]
        g = gates.get(c["id"])
        fix = fixes.get(s["fix"] or "")
        out.append({
            "issue": s, "chain": c, "svg": chain_svg(c["chain"], f"chain-{c['id']}"),
            "gate": ({"passed": gate_all_passed(g), "elapsed_ms": g["elapsed_ms"],
                      "checks": [{"name": n, **(g["checks"].get(n) or {"passed": False, "reason": "not judged"})}
                                 for n in CHECKS]} if g else None),
            "fix_spec": c["chain"].get("fix"), "fix": fix, "verifications": verifs.get(fix["id"], []) if fix else [],
            "archived": archive.get(c["id"], []),
            "others": [{"id": cid, "passed": gate_all_passed(gates[cid]) if cid in gates else None,
                        "root": chains[cid]["root_statement"], "archived": archive.get(cid, [])}
                       for cid in s["chains"] if cid != c["id"]],
        })
    return out


def report_charts(report: dict[str, Any]) -> dict[str, Markup]:
    """The report's four charts (the HTML report and the dashboard draw the same ones)."""
    ts = report["timeseries"]
    unit = ts["unit"]
    labels = [_label(p["t"], unit) for p in ts["issues"]]
    return {
        "issues": chart("chart-issues", f"Issues per {unit}: opened, resolved, active", labels,
                        bars=[("opened", [p["opened"] for p in ts["issues"]]),
                              ("resolved", [p["resolved"] for p in ts["issues"]])],
                        lines=[("active", [p["active"] for p in ts["issues"]])]),
        "mttr": chart("chart-mttr", "MTTR per cycle (hours)", [c["cycle"] for c in report["mttr_per_cycle"]],
                      bars=[("mttr", [c["mttr_hours"] or 0 for c in report["mttr_per_cycle"]])], unit="h"),
        "signals": chart("chart-signals", f"Noise vs genuine signals per {unit}", labels,
                         bars=[("noise", [p["noise"] for p in ts["signals"]]),
                               ("genuine", [p["genuine"] for p in ts["signals"]])], stacked=True),
        "classes": chart("chart-classes", "Failure classes eliminated (cumulative)", labels,
                         lines=[("eliminated", [p["eliminated"] for p in ts["classes_eliminated"]])]),
    }


def render_html(store: Store, report: dict[str, Any] | None = None, now: datetime | None = None,
                max_issues: int = 500) -> str:
    """The report as one self-contained HTML page; the issue table and chain graphs show the latest `max_issues`."""
    import json

    from jinja2 import Environment, PackageLoader, select_autoescape

    report = report or compute_report(store, now=now)
    charts = report_charts(report)
    env = Environment(loader=PackageLoader("agent", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ts"] = lambda d: rfc3339(d) if isinstance(d, datetime) else ("—" if d is None else d)
    env.filters["num"] = lambda v, nd=2: "—" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))
    env.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.0f}%"
    env.filters["tojson_compact"] = lambda v: json.dumps(v, ensure_ascii=False, default=str)
    template = env.get_template("report.html.j2")
    shown = report["issues"][-max_issues:] if max_issues else report["issues"]
    return template.render(r=report, charts=charts, issues=shown, hidden=len(report["issues"]) - len(shown),
                           details=_issue_details(store, shown), checks=CHECKS)
