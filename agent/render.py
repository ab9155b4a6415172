"""Terminal renderings shared by commands: a chain as a tree (symptom at the top, root at the bottom)
and a gate result as a table of checks."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from agent.models import Chain, GateResult, Observe


def describe_observe(observe: Observe | None) -> str:
    if observe is None:
        return "(unobserved)"
    from agent.gate import describe

    return describe(observe)


def chain_tree(chain: Chain, title: str | None = None) -> Tree:
    """The causal path from the symptom down to the root, each link with its mechanism."""
    causes: dict[str, list] = {}
    for link in chain.links:
        causes.setdefault(link.effect, []).append(link)
    tree = Tree(Text(title or f"chain {chain.id}", style="bold"))

    def label(node_id: str, mechanism: str | None) -> Text:
        node = chain.node(node_id)
        text = Text()
        if mechanism:
            text.append(f"because {mechanism}\n", style="dim")
        role = "symptom" if node_id == chain.symptom else "root" if node_id == chain.root else "why"
        style = {"symptom": "red", "root": "bold magenta", "why": "white"}[role]
        cat = f" [{node.category}]" if node.category else ""
        text.append(f"{role}{cat}: ", style=style)
        text.append(node.statement)
        text.append(f"\n  observed: {describe_observe(node.observe)}", style="dim")
        return text

    seen: set[str] = set()

    def grow(branch: Tree, node_id: str, mechanism: str | None) -> None:
        sub = branch.add(label(node_id, mechanism))
        if node_id in seen:
            sub.add(Text("(cycle)", style="red"))
            return
        seen.add(node_id)
        for link in sorted(causes.get(node_id, []), key=lambda lk: lk.cause):
            grow(sub, link.cause, link.mechanism)

    grow(tree, chain.symptom, None)
    for node in sorted(chain.nodes, key=lambda n: n.id):
        if node.id not in seen:
            tree.add(Text(f"{node.id} (not on the path): {node.statement}", style="yellow"))
    if chain.fix is not None:
        fx = chain.fix
        params = ", ".join(f"{k}={v}" for k, v in fx.params.items())
        tree.add(Text(f"fix [{fx.effect}]: {fx.action}({params}): {fx.description}", style="green"))
    return tree


def gate_table(result: GateResult) -> Table:
    table = Table("check", "verdict", "reason", box=None)
    for name, check in result.checks:
        verdict = Text("pass", style="green") if check.passed else Text("FAIL", style="bold red")
        if (check.model_extra or {}).get("escalated"):
            verdict.append(" (escalated)", style="yellow")
        table.add_row(name, verdict, escape(check.reason))
    return table
