"""`selfheal fingerprint FILE`: fingerprint and template of every line (contracts section 6)."""

from __future__ import annotations

import json
import sys
from typing import Iterator, TextIO

import typer

from agent.errors import InputError


def _lines(fh: TextIO) -> Iterator[str]:
    for line in fh:
        yield line.rstrip("\r\n")


def _open(file: str) -> TextIO:
    if file == "-":
        return open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)
    try:
        return open(file, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise InputError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{file}: is a directory, expected a file of log messages") from None
    except OSError as exc:
        raise InputError(f"{file}: cannot read ({exc.strerror or exc})") from None


def fingerprint(
    file: str = typer.Argument(..., help="One log message per line, or - for stdin."),
    json_out: bool = typer.Option(False, "--json", help='One JSON object per line: {"line", "fingerprint", "template"}.'),
) -> None:
    """Mine the file's messages into templates; print each line's fingerprint and final template."""
    from agent.fingerprint import Fingerprinter

    with _open(file) as fh:
        try:
            results = Fingerprinter().fingerprint_many(_lines(fh))
        except OSError as exc:
            raise InputError(f"{file}: cannot read ({exc.strerror or exc})") from None
    out = sys.stdout
    # Each cluster's JSON tail is built once; lines only add their number.
    tails: dict[tuple[str, str], str] = {}
    if json_out:
        for n, r in enumerate(results, 1):
            tail = tails.get(r)
            if tail is None:
                tail = tails[r] = f', "fingerprint": "{r[0]}", "template": {json.dumps(r[1], ensure_ascii=False)}}}\n'
            out.write(f'{{"line": {n}{tail}')
        out.flush()
        return
    width = max(4, len(str(len(results))))
    out.write(f"{'line':>{width}}  {'fingerprint':<24}  template\n")
    for n, (fp, template) in enumerate(results, 1):
        out.write(f"{n:>{width}}  {fp:<24}  {template}\n")
    out.flush()


def register(app: typer.Typer) -> None:
    app.command()(fingerprint)
