"""Check 3, completeness: is the chain a whole, concrete, evidenced explanation?

One simple path symptom <- ... <- root (no gap, cycle, branch or orphan);
between min_links and max_links links; a concrete mechanism on every link;
every node observed and matched by at least one signal; a root that states a
condition (not a proximate symptom) and has one of the categories.
"""

from __future__ import annotations

from typing import Any

from agent.gate.evidence import Evidence
from agent.gate.graph import Shape
from agent.gate.matching import describe, has_condition
from agent.gate.settings import GateSettings
from agent.models import CheckResult


def word_count(text: str) -> int:
    """Whitespace-separated words with at least one letter or digit ("->" is not a word)."""
    return sum(1 for w in text.split() if any(ch.isalnum() for ch in w))


def check_completeness(chain: Any, ev: Evidence, shape: Shape, settings: GateSettings) -> CheckResult:
    problems: list[str] = list(shape.problems)
    n_links = len(chain.links)
    lo, hi = settings.min_links, settings.max_links
    if n_links < lo:
        problems.append(
            f"chain has {n_links} link{'s' if n_links != 1 else ''}, needs {lo} to {hi}: too shallow, "
            f"ask why root {chain.root} was true and add the links to its cause"
        )
    elif n_links > hi:
        problems.append(f"chain has {n_links} links, needs {lo} to {hi}: merge links that restate one step")

    for c, e, mech in sorted({(link.cause, link.effect, link.mechanism) for link in chain.links}):
        found = settings.vague.found(mech)
        if found:
            problems.append(f"link {c}->{e}: mechanism is vague: " + ", ".join(f"'{w}'" for w in found))
        elif word_count(mech) < settings.min_mechanism_words:
            problems.append(
                f"link {c}->{e}: mechanism is vague: fewer than {settings.min_mechanism_words} words ('{mech.strip()}'); "
                f"say how {c} produces {e}"
            )

    for node in sorted(chain.nodes, key=lambda n: n.id):
        obs = node.observe
        if obs is None:
            problems.append(f"node {node.id} has no observe: an unobserved claim")
        elif not has_condition(obs):
            problems.append(f"node {node.id}: observe has neither match nor metric, so no signal can evidence it")
        elif not ev.hits(obs):
            problems.append(f"node {node.id}: no signal matches its observe ({describe(obs)})")

    root = chain.root_node
    found = settings.proximate.found(root.statement)
    if found:
        problems.append(
            f"root {root.id} states a proximate symptom: " + ", ".join(f"'{w}'" for w in found)
            + "; name the condition that produced it"
        )
    allowed = ", ".join(settings.categories)
    if root.category is None or not str(root.category).strip():
        problems.append(f"root {root.id} has no category (one of {allowed})")
    elif str(root.category).strip().lower() not in settings.categories:
        problems.append(f"root {root.id} has category '{root.category}', not one of {allowed}")

    if problems:
        return CheckResult(passed=False, reason="; ".join(problems), details={"problems": problems, "links": n_links})
    path = " <- ".join(reversed(shape.path or ()))
    return CheckResult(
        passed=True,
        reason=(
            f"one path {path} with {n_links} links, every mechanism concrete, every node evidenced; "
            f"root {root.id} is a {str(root.category).strip().lower()} condition"
        ),
        details={"problems": [], "links": n_links},
    )
