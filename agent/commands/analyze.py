"""`selfheal analyze`: draft a 5-Whys chain for an issue (or a recorded case), gate it, show the verdicts."""

from __future__ import annotations

from typing import Any, Optional

import typer

from agent.commands._common import config, console, open_store, print_json
from agent.errors import InputError


def analyze(
    issue: Optional[str] = typer.Argument(None, help="Issue id to analyse (e.g. ISS-0003)."),
    case: Optional[str] = typer.Option(
        None, "--case", help="Judge a recorded analysis case file offline (contracts section 9); no store, no probes."),
    json_out: bool = typer.Option(False, "--json", help="Print {escalated, chain, gate, reason, mode, analyst} as JSON."),
    check_kb: bool = typer.Option(False, "--check-kb", help="Validate the knowledge base (rules/knowledge) and list its modes."),
) -> None:
    """Root cause analysis: evidence -> chain -> four-check gate; re-drafts on rejection, escalates when none passes.

    Exit code 0 when a chain passed the gate, 1 when the issue was escalated (needs-human), 2 for bad input.
    """
    cfg = config()
    if check_kb:
        _check_kb(cfg, json_out)
        return
    if (issue is None) == (case is None):
        raise InputError("give either an issue id or --case FILE")
    if case is not None:
        from agent.analysis import analyze_case
        from agent.models import AnalysisCase, load_json_file, parse_model

        data = load_json_file(case)
        if not isinstance(data, dict):
            raise InputError(f"{case}: expected a JSON object with issue, signals and archive")
        parsed = parse_model(AnalysisCase, data, case)
        result = analyze_case(parsed, cfg)
        label = parsed.issue.id
    else:
        from agent.analysis import analyze_issue
        from agent.clock import SystemClock

        with open_store(cfg) as store:
            result = analyze_issue(store, cfg, issue, SystemClock())  # type: ignore[arg-type]
        label = issue  # type: ignore[assignment]
    if json_out:
        print_json(result.to_json())
    else:
        show(result, label)
    if result.escalated:
        raise typer.Exit(1)


def _check_kb(cfg: Any, json_out: bool) -> None:
    from agent.analysis.knowledge import knowledge_dirs, load_modes

    modes = load_modes(cfg)
    if json_out:
        print_json({"dirs": [str(d) for d in knowledge_dirs(cfg)], "modes": [m.to_json() for m in modes]})
        return
    from rich.table import Table

    table = Table("mode", "symptoms", "nodes", "roots", "title", box=None)
    for m in modes:
        roots = ", ".join(f"{r['node']} ({r['category']}, {r['action']})" for r in m.to_json()["roots"])
        table.add_row(m.id, str(len(m.symptoms)), str(len(m.nodes)), roots, m.title)
    out = console()
    out.print(table)
    out.print(f"{len(modes)} modes, all valid")


def show(result: Any, label: str) -> None:
    """The chain as a tree from the symptom down to the root, then the fix and each check's verdict.

    Text objects, not markup: statements and regexes are full of brackets."""
    from rich.table import Table
    from rich.text import Text
    from rich.tree import Tree

    from agent.gate import describe

    out = console()
    head = Text.assemble((label, "bold"), "  ")
    head.append("ESCALATED (needs-human)" if result.escalated else "PASSED",
                style="bold red" if result.escalated else "bold green")
    for name, prefix in (("mode", "  mode "), ("candidate_mode", "  candidate mode "), ("analyst", "  analyst "),
                         ("chain_id", "  chain ")):
        value = getattr(result, name, None)
        if value:
            head.append(prefix + str(value), style="cyan" if "mode" in name else "")
    out.print(head)
    chain = result.chain
    if chain is not None:
        effects = {link.cause: link for link in chain.links}
        causes = {link.effect: link.cause for link in chain.links}
        node = chain.symptom_node
        tree = Tree(_node_label(node, "symptom", describe, Text))
        branch, seen = tree, {node.id}
        while node.id in causes and causes[node.id] not in seen:
            cause = chain.node(causes[node.id])
            seen.add(cause.id)
            label_text = _node_label(cause, "root" if cause.id == chain.root else "why", describe, Text)
            label_text.append("\nbecause: " + effects[cause.id].mechanism, style="dim")
            branch = branch.add(label_text)
            node = cause
        out.print(tree)
        if chain.fix is not None:
            fix = chain.fix
            params = ", ".join(f"{k}={v}" for k, v in fix.params.items())
            line = Text.assemble(("fix ", "bold"), f"{fix.action}({params}) [{fix.effect}] -> {fix.target or '?'}: ",
                                 fix.description)
            out.print(line)
            if fix.postcondition is not None:
                out.print(Text("    postcondition: " + describe(fix.postcondition)))
    if result.gate is not None:
        table = Table("check", "verdict", "reason", box=None)
        for name, check in result.gate.checks:
            mark = Text("pass", style="green") if check.passed else Text("FAIL", style="red")
            if getattr(check, "escalated", False):
                mark.append(" (escalated)", style="yellow")
            table.add_row(name, mark, Text(check.reason))
        out.print(table)
        out.print(Text(f"gate took {result.gate.elapsed_ms:.1f} ms", style="dim"))
    out.print(Text(result.reason))


def _node_label(node: Any, role: str, describe: Any, text_cls: Any) -> Any:
    colour = {"symptom": "red", "root": "bold magenta", "why": "default"}[role]
    cat = f" [{node.category}]" if node.category else ""
    text = text_cls(f"{role} {node.id}{cat}: {node.statement}", style=colour)
    if node.observe is not None:
        text.append("\nobserve: " + describe(node.observe), style="dim")
    return text


def register(app: typer.Typer) -> None:
    app.command()(analyze)
