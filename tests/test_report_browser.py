"""The HTML report renders in a real browser: headless Chromium from the OS packages (`apt-get install chromium`).

Skipped, with the reason, where no Chromium is installed; nothing is installed by the test.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agent.report_html import render_html
from agent.store import Store

DATA = Path(__file__).parent / "data" / "report"
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM = next((p for p in CANDIDATES if os.access(p, os.X_OK)), None) or shutil.which("chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (/usr/bin/chromium); install the OS package "
                                                "'chromium' to run the browser test"),
]


class _Dom(HTMLParser):
    """Counts what the rendered DOM holds: elements by id and class, attributes set by the page's script."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.classes: list[str] = []
        self.body: dict[str, str] = {}
        self.text: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for c in (a.get("class") or "").split():
            self.classes.append(f"{tag}.{c}")
        if tag == "body":
            self.body = {k: v or "" for k, v in a.items()}
        if a.get("id") == "issues-shown":
            self._in = "shown"

    def handle_data(self, data):
        if self._in == "shown":
            self.text.append(data)
            self._in = None


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("report_fixture", DATA / "fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    store = Store.open(None)
    mod.build(store)
    out = tmp_path_factory.mktemp("html") / "report.html"
    out.write_text(render_html(store), encoding="utf-8")
    store.close()
    return out


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # a throwaway profile dir keeps runs independent; no network is needed (the page loads nothing)
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={cwd / 'profile'}", *args], capture_output=True, text=True, timeout=90,
                          cwd=cwd)


def test_dom_after_rendering_has_the_charts_table_and_chain_graphs(page: Path):
    proc = _chromium("--dump-dom", page.as_uri(), cwd=page.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = _Dom()
    dom.feed(proc.stdout)
    for chart in ("chart-issues", "chart-mttr", "chart-signals", "chart-classes"):
        assert chart in dom.ids
    assert dom.classes.count("tr.issue-row") == 6
    assert dom.classes.count("svg.chain-graph") == 4
    assert {"issue-ISS-0001", "issue-ISS-0002", "issue-ISS-0003", "issue-ISS-0006"} <= dom.ids
    assert dom.classes.count("rect.bar") > 0
    # the page's inline script ran in the browser: it marks the body and counts the rows it shows
    assert dom.body.get("data-ready") == "yes"
    assert "".join(dom.text).strip() == "6 of 6 issues"


def test_screenshot_renders_a_page(page: Path):
    shot = page.parent / "shot.png"
    proc = _chromium(f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri(), cwd=page.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2400)
    # a blank page compresses to a few kilobytes; charts, tables and text do not
    assert len(data) > 50_000
