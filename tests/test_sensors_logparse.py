"""Pure log parsing: the level and time a line states, in the formats real software writes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agent.sensors.logparse import Grouper, entry_level, line_time, resolve_tz

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=timezone.utc)
UTC = timezone.utc


@pytest.mark.parametrize("line, level", [
    ("2026-11-30 03:11:40,120 ERROR checkout-api: boom", "ERROR"),                     # Python logging
    ("ERROR:root:connection lost", "ERROR"),                                           # logging.basicConfig
    ("2026/11/30 03:11:40 [crit] 812#0: *3 SSL_do_handshake() failed", "CRITICAL"),    # nginx
    ("2026/11/30 03:11:40 [warn] 812#0: upstream response is buffered", "WARNING"),
    ("[Mon Nov 30 03:11:40.120 2026] [core:error] [pid 71] AH00037: Symbolic link not allowed", "ERROR"),  # Apache
    ("2026-11-30 03:11:40.120 UTC [4121] FATAL:  password authentication failed for user \"app\"", "CRITICAL"),
    ("2026-11-30 03:11:40.120 UTC [4121] LOG:  checkpoint starting: time", "INFO"),    # PostgreSQL
    ("2026-11-30 03:11:40.120 UTC [4121] PANIC:  could not write to file \"pg_wal/x\"", "CRITICAL"),
    ("<11>1 2026-11-30T03:11:40Z web-1 app 4121 - - payment declined", "ERROR"),        # RFC 5424, severity 3
    ("<28>Nov 30 03:11:40 web-1 app[4121]: disk almost full", "WARNING"),              # RFC 3164, severity 4
    ("E1130 03:11:40.120000 4121 server.go:88] listen failed", "ERROR"),                 # glog
    ('time="2026-11-30T03:11:40Z" level=warning msg="slow query"', "WARNING"),           # logrus
    ('{"ts":"2026-11-30T03:11:40Z","level":"error","msg":"boom"}', "ERROR"),             # JSON
    ("fail: Microsoft.AspNetCore.Server.Kestrel[13] Unhandled exception", "ERROR"),     # .NET console
    ("03:11:40.120 [main] WARN  c.e.Pool - pool at 90%", "WARNING"),                    # logback
    ("SEVERE: Servlet.service() threw exception", "ERROR"),                             # java.util.logging
    ("Nov 30 03:11:40 web-1 kernel: Out of memory: Killed process 4121 (gunicorn)", "ERROR"),  # no level word
    ("Nov 30 03:11:40 web-1 systemd[1]: nginx.service: Failed with result 'exit-code'.", "ERROR"),
    ("Nov 30 03:11:40 web-1 systemd[1]: Started Session 7 of user app.", "INFO"),
    ('10.0.0.7 - - [30/Nov/2026:03:11:40 +0000] "GET /wp-login.php HTTP/1.1" 404 162 "-" "scan"', "WARNING"),
    ('10.0.0.7 - - [30/Nov/2026:03:11:40 +0000] "POST /pay HTTP/1.1" 502 166 "-" "curl"', "ERROR"),
    ('10.0.0.7 - - [30/Nov/2026:03:11:40 +0000] "GET /error/help HTTP/1.1" 200 612 "-" "curl"', "INFO"),
    ("INFO request returned ERROR page to the client", "INFO"),                         # first level word wins
    ("0 errors, 12 warnings suppressed", "INFO"),
    ("worker 3 processed 12 jobs", "INFO"),
])
def test_levels(line, level):
    assert entry_level([line]) == level


def test_default_level_and_no_inference():
    assert entry_level(["segfault at 0 ip 00007f"], default="DEBUG", infer=False) == "DEBUG"
    assert entry_level(["plain"], default="WARNING") == "WARNING"


@pytest.mark.parametrize("line, expected", [
    ("2026-11-30T03:11:40Z INFO x", datetime(2026, 11, 30, 3, 11, 40, tzinfo=UTC)),
    ("2026-11-30T03:11:40.123456789+02:00 INFO x", datetime(2026, 11, 30, 1, 11, 40, 123456, tzinfo=UTC)),
    ("2026-11-30 03:11:40,120 ERROR x", datetime(2026, 11, 30, 3, 11, 40, 120000, tzinfo=UTC)),
    ("[2026-11-30 03:11:40] production.ERROR: x", datetime(2026, 11, 30, 3, 11, 40, tzinfo=UTC)),
    ("2026-11-30 03:11:40.120 UTC [4121] LOG: x", datetime(2026, 11, 30, 3, 11, 40, 120000, tzinfo=UTC)),
    ("<11>1 2026-11-30T03:11:40.5Z web-1 app - - - x", datetime(2026, 11, 30, 3, 11, 40, 500000, tzinfo=UTC)),
    ("Nov 30 03:11:40 web-1 kernel: x", datetime(2025, 11, 30, 3, 11, 40, tzinfo=UTC)),  # no year: not in the future
    ("Jan  2 11:59:00 web-1 cron[1]: x", datetime(2026, 1, 2, 11, 59, tzinfo=UTC)),
    ("2026/11/30 03:11:40 [error] 1#0: x", datetime(2026, 11, 30, 3, 11, 40, tzinfo=UTC)),
    ('10.0.0.7 - - [30/Nov/2026:03:11:40 -0500] "GET / HTTP/1.1" 200 1', datetime(2026, 11, 30, 8, 11, 40, tzinfo=UTC)),
    ("[Mon Nov 30 03:11:40.250 2026] [core:error] x", datetime(2026, 11, 30, 3, 11, 40, 250000, tzinfo=UTC)),
    ('time="2026-11-30T03:11:40Z" level=info msg=x', datetime(2026, 11, 30, 3, 11, 40, tzinfo=UTC)),
    ("no time here", None),
    ("2026-13-45 03:11:40 not a date", None),
])
def test_times(line, expected):
    assert line_time(line, NOW, timezone.utc) == expected


def test_naive_times_use_the_configured_zone():
    berlin = resolve_tz("Europe/Berlin")
    assert line_time("2026-07-01 12:00:00 INFO x", NOW, berlin) == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    assert line_time("2026-12-01 12:00:00 INFO x", NOW, berlin) == datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    assert line_time("2026-12-01 12:00:00 INFO x", NOW, resolve_tz("+05:30")) == datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown time zone"):
        resolve_tz("Mars/Olympus")


def group(text: str, **kw) -> list[list[str]]:
    lines, off = [], 0
    for line in text.split("\n"):
        lines.append((off, line))
        off += len(line) + 1
    return [e.lines for e in Grouper(**kw).group(lines)]


def test_grouping_and_limits():
    text = "a start\n  cont 1\n  cont 2\n  cont 3\nb next\n\nc after a blank\nCaused by: x\n... 3 more"
    assert group(text) == [["a start", "  cont 1", "  cont 2", "  cont 3"], ["b next"],
                           ["c after a blank", "Caused by: x", "... 3 more"]]
    assert group(text, multiline=False)[0] == ["a start"]
    [first, *_] = Grouper(max_lines=2).group([(0, "a"), (2, " b"), (5, " c"), (8, " d")])
    assert first.lines == ["a", " b"] and first.dropped == 2 and first.text().endswith("... 2 more lines")
