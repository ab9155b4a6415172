"""The `selfheal` command: a thin Typer app.

Commands live in `agent/commands/`, one module per area, each exposing
`register(app)`; this file only wires global options, error handling and
discovery. Errors are one line on stderr and a non-zero exit (`--debug` shows
the traceback).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Optional

import typer

from agent import __version__
from agent.errors import SelfhealError

app = typer.Typer(
    name="selfheal",
    help="selfheal: sensors -> triage -> 5-Whys analysis -> four-check gate -> allow-listed fix -> verify -> learn.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class Globals:
    home: Optional[str] = None
    config: Optional[str] = None
    debug: bool = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"selfheal {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    home: Optional[Path] = typer.Option(None, "--home", help="State directory (overrides $SELFHEAL_HOME; default ~/.local/share/selfheal)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file (default $SELFHEAL_HOME/selfheal.yaml)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    Globals.home = str(home) if home else None
    Globals.config = str(config) if config else None
    Globals.debug = debug


def _register_commands() -> None:
    import agent.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"agent.commands.{info.name}")
        module.register(app)


_register_commands()


def main() -> None:
    try:
        # Without standalone mode click returns (not raises) a command's typer.Exit code.
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and not isinstance(rc, bool) and rc:
            sys.exit(rc)
    except SelfhealError as exc:
        _fail(str(exc), exc.exit_code, exc)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 130, None)
    except KeyboardInterrupt:
        _fail("interrupted", 130, None)
    except Exception as exc:  # a usage error from click, or a bug: still one line
        # Usage errors (missing argument, bad option) come from whichever click typer uses: show them as click does.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", 70, exc)
    sys.exit(0)


def _fail(message: str, code: int, exc: BaseException | None) -> None:
    if Globals.debug and exc is not None:
        import traceback

        traceback.print_exception(exc)
    print(f"selfheal: error: {message}", file=sys.stderr)
    sys.exit(code)
