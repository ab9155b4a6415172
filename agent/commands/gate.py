"""`selfheal gate FILE`: judge a why-chain with the four checks."""

from __future__ import annotations

from typing import Any

import typer

from agent.errors import InputError


def gate(
    file: str = typer.Argument(..., help="A gate case {chain, signals, archive} (JSON), a bare selfheal.chain/v1 chain, or - for stdin."),
    json_out: bool = typer.Option(False, "--json", help="Print the gate result (contract section 4) as JSON."),
) -> None:
    """Judge a 5-Whys chain: reproduce, archive, completeness, counterfactual.

    A gate case carries its own evidence and archive. A bare chain is judged
    against the store's signals and archived chains (read-only; none when
    there is no store). Exit 0 when every check passed, 1 when one failed, 2
    for unreadable input.
    """
    from agent.models import load_json_file

    data = load_json_file(file)
    name = "<stdin>" if file == "-" else file
    chain, signals, archive = _read(data, name)

    from agent.gate import ArchiveIndex, Evidence, GateSettings, judge

    from agent.commands._common import config

    cfg = config()
    settings = GateSettings.load(cfg)
    if signals is None:
        signals, archive = _from_store(cfg, chain)
    # Reading and indexing are input preparation, as the contract times them: elapsed_ms is the four checks.
    index = ArchiveIndex(archive, settings)
    evidence = Evidence(signals)
    result = judge(chain, evidence, index, settings)
    if json_out:
        from agent.commands._common import print_json

        print_json(result.model_dump(mode="json"))
    else:
        _render(chain, result, len(signals), len(index))
    if not result.passed:
        raise typer.Exit(1)


def _read(data: Any, name: str) -> tuple[Any, list | None, list]:
    """(chain, signals or None for a bare chain, archive entries)."""
    from agent.models import CHAIN_SCHEMA, Chain, GateCase, parse_model

    if not isinstance(data, dict):
        raise InputError(f"{name}: expected a JSON object (a gate case or a chain), got {type(data).__name__}")
    if "chain" in data:
        case = parse_model(GateCase, data, name)
        chain, signals, archive = case.chain, case.signals, case.archive
    elif "nodes" in data or "links" in data or "schema" in data:
        chain, signals, archive = parse_model(Chain, data, name), None, []
    else:
        raise InputError(f"{name}: neither a gate case (no 'chain' field) nor a selfheal.chain/v1 chain (no 'nodes')")
    if chain.schema_ != CHAIN_SCHEMA:
        raise InputError(f"{name}: chain schema is {chain.schema_!r}, expected {CHAIN_SCHEMA!r}")
    return chain, signals, archive


def _from_store(cfg: Any, chain: Any) -> tuple[list, list]:
    """Signals of the sources the chain observes, and the archive; nothing when there is no store yet."""
    if not cfg.store_path.exists():
        return [], []
    from agent.commands._common import open_store
    from agent.store.chains import archive_entries
    from agent.store.signals import query_signals

    sources = sorted({n.observe.source for n in chain.nodes if n.observe is not None})
    with open_store(cfg, readonly=True) as store:
        signals = [s for src in sources for s in query_signals(store, source=src)]
        archive = archive_entries(store)
    return signals, archive


def _render(chain: Any, result: Any, n_signals: int, n_archived: int) -> None:
    from rich.text import Text

    from agent.commands._common import console
    from agent.render import chain_tree, gate_table

    out = console()
    out.print(chain_tree(chain))
    out.print(gate_table(result))
    status = Text("passed", style="bold green") if result.passed else Text("rejected", style="bold red")
    out.print(Text("gate ").append(status).append(
        f" in {result.elapsed_ms:.2f} ms ({n_signals} signals, {n_archived} archived chains)"))


def register(app: typer.Typer) -> None:
    app.command()(gate)
