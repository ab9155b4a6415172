"""The CLI's own contract: usage mistakes and failures are a short message and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("args, expected", [
    (("ask",), "Missing argument 'question'"),
    (("signals", "--limit", "many"), "Invalid value for '--limit'"),
    (("no-such-command",), "No such command 'no-such-command'"),
])
def test_usage_errors_are_click_messages_with_exit_2(cli, args, expected):
    res = cli(*args)
    assert res.returncode == 2
    assert expected in res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr


def test_version_and_help_list_every_area(cli):
    assert cli("--version").stdout.startswith("selfheal ")
    out = cli("--help").stdout
    for command in ("demo", "ingest", "triage", "analyze", "gate", "fix", "run", "report", "eval", "serve", "sense"):
        assert command in out
