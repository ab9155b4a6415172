"""The shape of a chain's links: is it one simple path symptom <- ... <- root?

Everything here iterates in sorted id order, so problems and paths never
depend on the order of nodes or links in the file.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shape:
    path: tuple[str, ...] | None  # root ... symptom along links (cause -> effect); the shortest if several
    problems: tuple[str, ...]  # why it is not one simple path; empty when it is


def shape(chain: Any) -> Shape:
    ids = sorted(n.id for n in chain.nodes)
    root, symptom = chain.root, chain.symptom
    pairs = [(link.cause, link.effect) for link in chain.links]
    effects: dict[str, list[str]] = {i: [] for i in ids}
    causes: dict[str, list[str]] = {i: [] for i in ids}
    for c, e in sorted(set(pairs)):
        if c != e:
            effects[c].append(e)
            causes[e].append(c)

    problems: list[str] = []
    named: set[str] = set()  # nodes a problem already names, so they are not also called orphans
    if root == symptom:
        problems.append(f"root and symptom are the same node {root}: a chain needs links from the root to the symptom")
    for c, e in sorted(set(p for p in pairs if p[0] == p[1])):
        problems.append(f"cycle: link {c}->{e} makes {c} its own cause")
        named.add(c)
    for c, e in sorted({p for p in pairs if pairs.count(p) > 1}):
        problems.append(f"link {c}->{e} appears {pairs.count((c, e))} times")
    for c in causes[root]:
        problems.append(f"root {root} has a cause ({c}->{root}): the root must be the deepest node of the chain")
        named.add(c)
    for e in effects[symptom]:
        problems.append(f"symptom {symptom} causes {e} ({symptom}->{e}): the symptom must be the end of the chain")
        named.add(e)
    for nid in ids:
        if len(effects[nid]) > 1:
            problems.append(f"branch: {nid} causes {len(effects[nid])} nodes ({', '.join(effects[nid])}); a chain is one path")
            named.update(effects[nid])
        if len(causes[nid]) > 1:
            problems.append(f"branch: {nid} has {len(causes[nid])} causes ({', '.join(causes[nid])}); a chain is one path")
            named.update(causes[nid])
    for cycle in _cycles(ids, effects):
        problems.append("cycle: " + " -> ".join(cycle + [cycle[0]]))
        named.update(cycle)

    forward = _walk(root, effects)
    on_path = set(forward)
    if root != symptom and forward[-1] != symptom:
        backward = _walk(symptom, causes)
        on_path.update(backward)
        last, first = forward[-1], backward[-1]
        if not effects[last] and not causes[first]:
            src = f"root {root}" if last == root else f"{last} (reached from root {root})"
            dst = f"symptom {symptom}" if first == symptom else f"{first} (reached back from symptom {symptom})"
            problems.append(f"gap: no link leads from {src} to {dst}; add the link that explains how one causes the other")
    for nid in ids:
        if nid not in on_path and nid not in named:
            problems.append(f"orphan node {nid}: not on the path from root {root} to symptom {symptom}")
    return Shape(path=_shortest(root, symptom, effects), problems=tuple(problems))


def _walk(start: str, nxt: dict[str, list[str]]) -> list[str]:
    """Follow the only next node while there is exactly one and it is new."""
    seen = [start]
    cur = start
    while len(nxt[cur]) == 1 and nxt[cur][0] not in seen:
        cur = nxt[cur][0]
        seen.append(cur)
    return seen


def _shortest(root: str, symptom: str, effects: dict[str, list[str]]) -> tuple[str, ...] | None:
    if root == symptom:
        return (root,)
    prev: dict[str, str] = {root: root}
    queue = deque([root])
    while queue:
        cur = queue.popleft()
        for nxt in effects[cur]:
            if nxt not in prev:
                prev[nxt] = cur
                if nxt == symptom:
                    path = [symptom]
                    while path[-1] != root:
                        path.append(prev[path[-1]])
                    return tuple(reversed(path))
                queue.append(nxt)
    return None


def _cycles(ids: list[str], effects: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    counter = 0
    for start in ids:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            succ = effects[node]
            while i < len(succ):
                nxt = succ[i]
                i += 1
                if nxt not in index:
                    work.append((node, i))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    cycles = []
    for comp in sorted(comps):
        members = set(comp)
        # Walk inside the component from its smallest id until a node repeats: that loop is a cycle.
        path, seen = [comp[0]], {comp[0]: 0}
        while True:
            nxt = next(n for n in effects[path[-1]] if n in members)
            if nxt in seen:
                cycles.append(path[seen[nxt]:])
                break
            seen[nxt] = len(path)
            path.append(nxt)
    return cycles
