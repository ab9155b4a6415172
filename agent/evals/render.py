"""The eval as tables: one row per case, the scores against the thresholds, and what each failing case got wrong."""

from __future__ import annotations

import json
from typing import Any

from agent.evals.runner import EvalReport
from agent.evals.scoring import CHECKS

# One letter per check keeps the case table inside 80 columns; the legend under it names them.
SHORT = {"triage": "T", "issues": "I", "escalation": "E", "root_cause": "R", "gate": "G", "fix": "F", "verify": "V",
         "recurrence": "C", "repeat": "P", "store": "S"}

REASON_CHARS = 600


def _mark(passed: bool | None) -> Any:
    from rich.text import Text

    if passed is None:
        return Text("·", style="dim")
    return Text("✓", style="green") if passed else Text("✗", style="bold red")


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=False)


def show_report(report: EvalReport, console: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"selfheal eval: {report.path} ({report.mode})", box=None, pad_edge=False)
    # the name gives way (ellipsis) so the marks always fit the terminal
    table.add_column("case", no_wrap=True, overflow="ellipsis", max_width=max(16, console.width - 48))
    for name in CHECKS:
        table.add_column(SHORT[name], justify="center", no_wrap=True)
    table.add_column("MTTR", justify="right", no_wrap=True)
    table.add_column("result", no_wrap=True)
    for c in report.cases:
        status = Text(c.status, style={"passed": "green", "failed": "bold red", "error": "bold red",
                                       "skipped": "yellow"}.get(c.status, ""))
        marks = [_mark(c.checks[n].passed) if n in c.checks else _mark(None) for n in CHECKS]
        mttr = "" if c.mttr_s is None else f"{c.mttr_s / 60.0:.0f}m"
        table.add_row(c.name, *marks, mttr, status)
    console.print(table)
    console.print(Text("  ".join(f"{SHORT[n]} {n}" for n in CHECKS) + "  (✓ passed, ✗ failed, · does not apply)",
                       style="dim"))

    summary = report.summary
    scores = Table(title="scores", box=None, pad_edge=False)
    for col in ("check", "score", "passed", "minimum"):
        scores.add_column(col, justify="left" if col == "check" else "right")
    minimums = report.limits.get("min_scores") or {}
    for name in CHECKS:
        value = summary["scores"][name]
        n = summary["counts"][name]
        minimum = minimums.get(name)
        low = value is not None and minimum is not None and value < minimum
        scores.add_row(name, Text("n/a" if value is None else f"{value:.3f}", style="bold red" if low else ""),
                       f"{n['passed']}/{n['applicable']}", "" if minimum is None else f"{minimum:g}")
    console.print(scores)
    mttr = summary["mttr_minutes"]
    console.print(Text(
        f"{summary['cases']} cases: {summary['passed']} passed, {summary['failed']} failed, {summary['errors']} errors, "
        f"{summary['skipped']} skipped; {summary['resolved']} resolved, simulated MTTR "
        f"{'n/a' if mttr is None else f'{mttr:.1f} min'}; repeat issues {summary['repeat_issues']}; "
        f"{report.elapsed_s:.1f} s"))

    skipped: dict[str, list[str]] = {}
    for c in report.cases:
        if c.status == "skipped":
            skipped.setdefault(c.reason, []).append(c.name)
    for reason, names in skipped.items():
        console.print(Text.assemble(("\nskipped", "yellow"), f" ({reason}): {', '.join(names)}"))
    for c in report.cases:
        if c.status == "error":
            console.print(Text.assemble(("\n✗ " + c.name, "bold red"), f"  could not run: {c.error}"))
        elif c.status == "failed":
            console.print(Text("\n✗ " + c.name + f" ({c.kind})", style="bold red"))
            for name in c.failed:
                check = c.checks[name]
                console.print(Text(f"  {name}: {check.detail}"))
                console.print(Text(f"    expected: {_compact(check.expected)}", style="green"))
                console.print(Text(f"    got:      {_compact(check.got)}", style="red"))
            if c.reason:
                reason = c.reason if len(c.reason) <= REASON_CHARS else c.reason[:REASON_CHARS] + " ... (--json has all)"
                console.print(Text(f"  analysis: {reason}", style="dim"))
    if report.violations:
        console.print(Text(f"\nFAILED: {len(report.violations)} threshold(s) missed"
                           + (f" ({report.thresholds})" if report.thresholds else ""), style="bold red"))
        for v in report.violations:
            console.print(Text("  " + v, style="red"))
    else:
        console.print(Text("\nPASSED: every threshold met" + (f" ({report.thresholds})" if report.thresholds else ""),
                           style="bold green"))


def show_loghub(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title="fingerprint grouping accuracy (Loghub)", box=None, pad_edge=False)
    for col in ("dataset", "accuracy", "lines", "groups", "lines/s"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for name, r in result["datasets"].items():
        table.add_row(name, f"{r['accuracy']:.4f}", str(r["lines"]), str(r["groups"]),
                      "" if r["lines_per_s"] is None else str(r["lines_per_s"]))
    table.add_row("mean", f"{result['mean_accuracy']:.4f}", "", "", "", style="bold")
    console.print(table)
