"""The dashboard: server-rendered pages that keep themselves current without a reload.

Each page is a set of sections rendered by Jinja2 partials (templates/_*.html.j2, autoescaped; chain graphs
and charts are the report's own SVG functions from agent/report_html.py, which escape every text). The page's
script (static/dashboard.js) polls `/ui/state/...`, a JSON `{"version": ..., "sections": {element id: html}}`
of the same partials, and swaps the sections whose page version changed. No network resource is referred to:
CSS and JS are served from /static, and the Content-Security-Policy allows only this origin.

With a token configured, pages need the token: a bearer header, or the session cookie the login form sets.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from agent.models import rfc3339
from agent.server import auth

HERE = Path(__file__).parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
POLL_MS = {"index": 3000, "issue": 3000, "report": 15000}
ISSUE_FILTERS = ("active", "needs-human", "resolved", "all")


def _ts(value: Any) -> str:
    if isinstance(value, datetime):
        return rfc3339(value).replace("T", " ").replace("Z", "")[:19]
    return "—" if value in (None, "") else str(value)


def _num(value: Any, nd: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{nd}f}" if isinstance(value, float) else str(value)


ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html", "j2"]),
                  trim_blocks=True, lstrip_blocks=True)
ENV.filters["ts"] = _ts
ENV.filters["num"] = _num
ENV.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.0f}%"


def _label(t: datetime, unit: str) -> str:
    return t.strftime("%m-%d %H:00") if unit == "hour" else t.strftime("%m-%d")


def render(name: str, **ctx: Any) -> str:
    return ENV.get_template(name).render(**ctx)


def state_version(sections: dict[str, str]) -> str:
    h = hashlib.sha1()
    for k in sorted(sections):
        h.update(k.encode())
        h.update(b"\0")
        h.update(sections[k].encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- sections (pure over the store)


def index_sections(store: Any, status: str, kind: str | None) -> dict[str, str]:
    from agent.server.views import list_issues
    from agent.store.server import metric_counts

    data = list_issues(store, status=status, kind=kind, limit=500)
    counts = metric_counts(store)
    return {"overview": render("_overview.html.j2", c=counts),
            "issue-list": render("_issue_rows.html.j2", data=data, status=status)}


def issue_sections(store: Any, issue_id: str) -> dict[str, str] | None:
    from agent.report_html import chain_svg
    from agent.server.views import issue_detail

    d = issue_detail(store, issue_id, timeline_limit=300)
    if d is None:
        return None
    svg = chain_svg(d["chain"]["chain"], "chain-graph") if d["chain"] else None
    return {
        "issue-head": render("_issue_head.html.j2", d=d),
        "sec-chain": render("_chain.html.j2", d=d, svg=svg),
        "sec-gate": render("_gate.html.j2", d=d),
        "sec-fixes": render("_fixes.html.j2", d=d),
        "sec-drafts": render("_drafts.html.j2", d=d),
        "sec-timeline": render("_timeline.html.j2", d=d),
    }


def report_sections(store: Any) -> dict[str, str]:
    from agent.report import compute_report
    from agent.report_html import report_charts

    report = compute_report(store)
    return {"report-body": render("_report.html.j2", r=report, charts=report_charts(report))}


# --------------------------------------------------------------------------- helpers


def safe_next(target: str | None) -> str:
    """Only same-site paths after login (never //host, a scheme or a backslash trick)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status,
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})


def _state(sections: dict[str, str]) -> Response:
    from agent.server.views import dumps

    return Response(dumps({"version": state_version(sections), "sections": sections}), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def _login_redirect(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


def _unauthorised() -> Response:
    return Response(b'{"detail":"missing or wrong bearer token"}', status_code=401, media_type="application/json",
                    headers={"WWW-Authenticate": "Bearer"})


def _page(request: Request, template: str, sections: dict[str, str], poll: str, interval: int, **ctx: Any) -> HTMLResponse:
    return _html(render(template, sections=sections, poll=poll, interval=interval, version=state_version(sections),
                        path=request.url.path, **ctx))


# --------------------------------------------------------------------------- routes


def register(app: FastAPI, *, reader: Callable[[], Any], allowed: Callable[[Request], bool], token: str | None) -> None:
    def status_param(status: str) -> str:
        return status if status in ISSUE_FILTERS else "active"

    def kind_param(kind: str | None) -> str | None:
        return kind if kind in ("failure", "warning") else None

    @app.get("/", include_in_schema=False)
    def index(request: Request, status: str = Query("active"), kind: str | None = Query(None)):
        if not allowed(request):
            return _login_redirect(request)
        status, kind = status_param(status), kind_param(kind)
        with reader() as store:
            sections = index_sections(store, status, kind)
        poll = f"/ui/state?status={quote(status)}" + (f"&kind={quote(kind)}" if kind else "")
        return _page(request, "index.html.j2", sections, poll, POLL_MS["index"], title="Issues", status=status,
                     kind=kind, filters=ISSUE_FILTERS)

    @app.get("/issues/{issue_id}", include_in_schema=False)
    def issue_page(request: Request, issue_id: str):
        if not allowed(request):
            return _login_redirect(request)
        with reader() as store:
            sections = issue_sections(store, issue_id)
        if sections is None:
            return _html(render("missing.html.j2", title="Not found", what=f"issue {issue_id}", sections={}, poll="",
                                interval=0, version="", path=request.url.path), status=404)
        return _page(request, "issue.html.j2", sections, f"/ui/state/issues/{quote(issue_id)}", POLL_MS["issue"],
                     title=issue_id, issue_id=issue_id)

    @app.get("/report", include_in_schema=False)
    def report_page(request: Request):
        if not allowed(request):
            return _login_redirect(request)
        with reader() as store:
            sections = report_sections(store)
        return _page(request, "report.html.j2", sections, "/ui/state/report", POLL_MS["report"], title="Report")

    @app.get("/ui/state", include_in_schema=False)
    def index_state(request: Request, status: str = Query("active"), kind: str | None = Query(None)):
        if not allowed(request):
            return _unauthorised()
        with reader() as store:
            return _state(index_sections(store, status_param(status), kind_param(kind)))

    @app.get("/ui/state/issues/{issue_id}", include_in_schema=False)
    def issue_state(request: Request, issue_id: str):
        if not allowed(request):
            return _unauthorised()
        with reader() as store:
            sections = issue_sections(store, issue_id)
        if sections is None:
            return Response(b'{"detail":"no such issue"}', status_code=404, media_type="application/json")
        return _state(sections)

    @app.get("/ui/state/report", include_in_schema=False)
    def report_state(request: Request):
        if not allowed(request):
            return _unauthorised()
        with reader() as store:
            return _state(report_sections(store))

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = Query("/")):
        if token is None:
            return RedirectResponse(safe_next(next), status_code=303)
        return _html(render("login.html.j2", title="Sign in", next=safe_next(next), failed=False, sections={},
                            poll="", interval=0, version="", path=request.url.path))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        fields = {k: v[0] for k, v in parse_qs((await request.body())[:64 * 1024].decode("utf-8", "replace")).items()}
        target = safe_next(fields.get("next"))
        if token is None:
            return RedirectResponse(target, status_code=303)
        if not auth.token_matches(fields.get("token"), token):
            return _html(render("login.html.j2", title="Sign in", next=target, failed=True, sections={}, poll="",
                                interval=0, version="", path=request.url.path), status=401)
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(auth.COOKIE, auth.session_value(token), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout():
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(auth.COOKIE, path="/")
        return resp
