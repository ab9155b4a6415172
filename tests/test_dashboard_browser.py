"""The dashboard in a real browser: Playwright driving the OS's Chromium against `selfheal serve --loop`.

Needs the Python package `playwright` (never its browser download) and Debian's `chromium` package
(/usr/bin/chromium); skipped, with the reason, where either is missing. Signals of a recorded incident are
posted over HTTP; the open issue appears on the already-open page without a reload; the loop analyses it and
the page shows its gate verdict; the issue page draws the why-chain as an SVG graph with the gate's checks.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import httpx
import pytest

from tests.data.server.harness import ServerProcess

REPO = Path(__file__).resolve().parents[1]
INCIDENT = REPO / "evals" / "incidents" / "disk-full-unrotated-logs" / "signals.jsonl"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

_missing = []
if importlib.util.find_spec("playwright") is None:
    _missing.append("the Python package 'playwright' is not installed (pip install playwright; no browser download)")
if not os.access(CHROMIUM, os.X_OK):
    _missing.append(f"{CHROMIUM} is missing (apt-get install -y chromium)")

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(bool(_missing), reason="; ".join(_missing) or "ready")]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _watch(page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    # nothing may be fetched from anywhere but the server itself
    page.on("request", lambda req: None if req.url.startswith(("http://127.0.0.1", "data:")) else
            problems.append(f"request elsewhere: {req.url}"))
    return problems


def test_issue_appears_live_and_its_chain_renders(tmp_path: Path, browser, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SELFHEAL_TOKEN", raising=False)
    server = ServerProcess(tmp_path / "server", args=("--loop", "--interval", "2", "--dry-run")).start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems = _watch(page)
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready='yes']")
        assert "no active issues" in page.inner_text("#issue-list")
        page.evaluate("window.__marker = 'loaded once'")

        r = httpx.post(server.url + "/v1/signals", content=INCIDENT.read_bytes(),
                       headers={"content-type": "application/x-ndjson"}, timeout=30)
        assert r.status_code == 200 and r.json()["stored"] > 0

        page.wait_for_selector("tr.issue-row", timeout=30_000)
        # the loop analyses it; the row says so, still without a reload
        page.wait_for_selector("tr.issue-row .pass", timeout=60_000)
        assert page.evaluate("window.__marker") == "loaded once"
        assert int(page.get_attribute("body", "data-polls")) >= 1
        assert page.get_attribute("#live", "data-state") == "live"

        row = page.locator("tr.issue-row", has=page.locator(".pass")).first
        issue_id = row.get_attribute("id").removeprefix("row-")
        row.locator("a").first.click()
        page.wait_for_url(f"**/issues/{issue_id}")
        page.wait_for_selector("#sec-chain svg.chain-graph")

        api = httpx.get(f"{server.url}/v1/issues/{issue_id}", timeout=30).json()
        chain = api["chain"]["chain"]
        graph = page.locator("#sec-chain svg.chain-graph")
        assert graph.locator("g.node").count() == len(chain["nodes"])
        assert graph.locator("g.node.symptom").count() == 1 and graph.locator("g.node.root").count() == 1
        assert graph.locator("line.link").count() == len(chain["links"])
        root_text = graph.locator("g.node.root").text_content()
        assert chain["root"] in root_text
        box = graph.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 200
        # the root is drawn below the symptom: layered from the symptom down to the root cause
        symptom_y = graph.locator("g.node.symptom rect").bounding_box()["y"]
        root_y = graph.locator("g.node.root rect").bounding_box()["y"]
        assert root_y > symptom_y

        checks = page.locator("tr.gate-check")
        assert checks.count() == 4
        for i in range(4):
            name = checks.nth(i).get_attribute("data-check")
            expected = "yes" if api["gate"]["checks"][name]["passed"] else "no"
            assert checks.nth(i).get_attribute("data-passed") == expected
            assert api["gate"]["checks"][name]["reason"][:40] in checks.nth(i).inner_text()
        page.screenshot(path=str(tmp_path / "issue.png"), full_page=True)
        assert problems == []
    finally:
        server.stop()


def test_login_then_live_updates_with_the_session_cookie(tmp_path: Path, browser):
    token = "browser-token-42"
    server = ServerProcess(tmp_path / "server", env={"SELFHEAL_TOKEN": token}).start()
    try:
        page = browser.new_page()
        problems = _watch(page)
        page.goto(server.url + "/report")
        assert "/login" in page.url
        page.fill("input[name=token]", "wrong")
        page.click("button[type=submit]")
        assert page.locator("#login-failed").is_visible()
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        page.wait_for_url("**/report")
        assert page.locator("svg#chart-issues").count() == 1
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready='yes']")
        r = httpx.post(server.url + "/v1/signals", content=INCIDENT.read_bytes(), timeout=30,
                       headers={"content-type": "application/x-ndjson", "Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        page.wait_for_selector("tr.issue-row", timeout=30_000)
        assert page.get_attribute("#live", "data-state") == "live"
        # the 401 of the login attempt is the only console error (the browser logs failed form posts)
        assert [p for p in problems if "401" not in p] == []
    finally:
        server.stop()


def test_api_docs_render_offline(tmp_path: Path, browser, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SELFHEAL_TOKEN", raising=False)
    server = ServerProcess(tmp_path / "server", args=("--no-triage",)).start()
    try:
        page = browser.new_page()
        problems = _watch(page)
        page.goto(server.url + "/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        text = page.inner_text("body")
        for path in ("/v1/signals", "/v1/alertmanager", "/v1/issues/{issue_id}", "/v1/report", "/metrics"):
            assert path in text
        assert problems == []
    finally:
        server.stop()
