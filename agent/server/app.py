"""The HTTP service: ingest, the read API, metrics, OpenAPI docs and the dashboard, in one FastAPI app.

`create_app(cfg)` builds the app; the store is opened (as its single writer) when the app starts and closed
when it stops, so `uvicorn` (or FastAPI's TestClient used as a context manager) runs it. Routes:

  POST /v1/signals        contract signals: a JSON array, one object, or NDJSON; ?wait=true triages first
  POST /v1/alertmanager   an Alertmanager webhook payload: one `alert` signal per alert
  GET  /v1/issues         issues, newest first (?status=active|all|<status>[,...] &kind= &limit= &offset=)
  GET  /v1/issues/{id}    one issue: timeline, chain, gate result, all drafts, fixes, verifications, archive
  GET  /v1/report         the report (contracts section 7 keys and detail); ?headline=true for the keys only
  GET  /healthz           liveness, and the state of the background work
  GET  /metrics           Prometheus exposition
  GET  /docs, /openapi.json
  GET  /, /issues/{id}, /report   the dashboard (server-rendered; /ui/state/... feeds its polling)
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from agent import __version__
from agent.clock import Clock, SystemClock
from agent.config import Config
from agent.models import Signal
from agent.server import auth
from agent.server.backend import TRIAGE_BATCH, Backend, TriageFailed
from agent.server.ingest import IngestError, parse_alertmanager, parse_signals, read_body
from agent.server.metrics import CONTENT_TYPE, LatencyMiddleware, Metrics
from agent.server.views import dumps, issue_detail, list_issues

log = logging.getLogger("selfheal.server")
HERE = Path(__file__).parent


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


class IngestResult(BaseModel):
    received: int
    stored: int
    duplicates: int
    verdicts: dict[str, int] | None = None
    issues: list[str] | None = None
    triage_error: str | None = None


class ErrorBody(BaseModel):
    detail: str
    index: int | None = None
    field: str | None = None
    line: int | None = None


def _signals_body_doc() -> dict[str, Any]:
    schema = Signal.model_json_schema()
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "array", "items": schema}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "one signal (JSON object) per line"}},
    }}}


def _alertmanager_body_doc() -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["alerts"],
        "properties": {"alerts": {"type": "array", "items": {"type": "object"}}, "receiver": {"type": "string"},
                       "commonLabels": {"type": "object"}, "commonAnnotations": {"type": "object"}},
        "description": "Alertmanager webhook payload (version 4)"}}}}}


_ERRORS = {400: {"model": ErrorBody, "description": "body is not JSON / not UTF-8 / bad gzip"},
           401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
           413: {"model": ErrorBody, "description": "body over server.max_body_bytes or batch over server.max_batch"},
           422: {"model": ErrorBody, "description": "not valid signals: names the item index and the field"}}


def create_app(cfg: Config, *, backend: Backend | None = None, clock: Clock | None = None, triage: bool = True,
               triage_batch: int = TRIAGE_BATCH, loop_interval_s: float | None = None) -> FastAPI:
    """The app; the store opens when it starts (or `backend`, opened already, is used and closed at shutdown)."""
    clock = clock or SystemClock()
    token = auth.resolve_token(cfg)
    limits = cfg.server
    holder: dict[str, Backend] = {}

    def current() -> Backend:
        b = holder.get("backend")
        if b is None:
            raise HTTPException(503, "the server is starting or stopping")
        return b

    def reader():
        return current().reader()

    metrics = Metrics(reader)

    def count_verdicts(results) -> None:
        for r in results:
            metrics.verdicts.labels(r.verdict).inc()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        b = backend or Backend.open(cfg, clock=clock, triage=triage, triage_batch=triage_batch,
                                    loop_interval_s=loop_interval_s)
        b.on_verdicts = count_verdicts
        holder["backend"] = b
        b.start()
        try:
            yield
        finally:
            holder.pop("backend", None)
            await run_in_threadpool(b.close)

    app = FastAPI(title="selfheal", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Ingest signals from many hosts; read issues, chains, gate results, fixes and the "
                              "report. With a configured token every /v1 endpoint and /metrics need "
                              "`Authorization: Bearer <token>`.")
    app.state.metrics = metrics
    app.state.backend_of = current
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _mount_docs(app)

    # ------------------------------------------------------------------ auth

    def allowed_read(request: Request) -> bool:
        if token is None:
            return True
        return (auth.token_matches(auth.bearer(request.headers.get("authorization")), token)
                or auth.session_matches(request.cookies.get(auth.COOKIE), token))

    def require_read(request: Request) -> None:
        if not allowed_read(request):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def require_write(request: Request, endpoint: str) -> None:
        if token is not None and not auth.token_matches(auth.bearer(request.headers.get("authorization")), token):
            metrics.rejected.labels(endpoint, "401").inc()
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _bad_params(request: Request, exc: RequestValidationError) -> JSON:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        return JSON({"detail": f"{loc}: {err.get('msg', 'invalid')}", "field": loc}, status_code=422)

    # ------------------------------------------------------------------ ingest

    async def _ingest(request: Request, endpoint: str, parse, wait: bool) -> JSON:
        require_write(request, endpoint)
        try:
            body = await read_body(request.stream(), request.headers, limits.max_body_bytes)
            signals = await run_in_threadpool(parse, body)
        except IngestError as exc:
            metrics.rejected.labels(endpoint, str(exc.status)).inc()
            return JSON(exc.body(), status_code=exc.status)
        except Exception as exc:  # a body that trips a validator in an unforeseen way is still the body's fault
            log.exception("ingest: unexpected error while validating a %s body", endpoint)
            metrics.rejected.labels(endpoint, "422").inc()
            return JSON({"detail": f"invalid {endpoint} body: {type(exc).__name__}: {exc}"}, status_code=422)
        b = current()
        triage_error = None
        try:
            new, results = await run_in_threadpool(b.ingest, signals, wait=wait)
        except TriageFailed as exc:
            new, results, triage_error = exc.stored, [], str(exc)
        metrics.ingested.labels(endpoint).inc(new)
        metrics.duplicates.labels(endpoint).inc(len(signals) - new)
        out: dict[str, Any] = {"received": len(signals), "stored": new, "duplicates": len(signals) - new}
        if triage_error is not None:
            out["triage_error"] = triage_error
        elif wait:
            verdicts: dict[str, int] = {}
            for r in results:
                verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
            out["verdicts"] = verdicts
            out["issues"] = sorted({r.issue for r in results if r.issue})
        return JSON(out)

    @app.post("/v1/signals", tags=["ingest"], response_model=IngestResult, responses=_ERRORS,
              openapi_extra=_signals_body_doc(),
              summary="Ingest contract signals (JSON array or NDJSON); all or nothing, idempotent by id")
    async def post_signals(request: Request, wait: bool = Query(False, description="Triage the batch before answering "
                                                                                   "and return its verdicts.")):
        def parse(body: bytes):
            return parse_signals(body, limits.max_batch)

        return await _ingest(request, "signals", parse, wait)

    @app.post("/v1/alertmanager", tags=["ingest"], response_model=IngestResult, responses=_ERRORS,
              openapi_extra=_alertmanager_body_doc(),
              summary="Alertmanager webhook receiver: one `alert` signal per alert")
    async def post_alertmanager(request: Request, wait: bool = Query(False)):
        def parse(body: bytes):
            signals = parse_alertmanager(body, clock.now())
            if len(signals) > limits.max_batch:
                raise IngestError(413, f"payload of {len(signals)} alerts exceeds server.max_batch ({limits.max_batch})")
            return signals

        return await _ingest(request, "alertmanager", parse, wait)

    # ------------------------------------------------------------------ reads

    @app.get("/v1/issues", tags=["read"], summary="Issues, newest first")
    def get_issues(request: Request,
                   status: str = Query("active", description="active, all, or statuses separated by commas"),
                   kind: str | None = Query(None, description="failure or warning"),
                   limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)):
        require_read(request)
        with reader() as store:
            try:
                return JSON(list_issues(store, status=status, kind=kind, limit=limit, offset=offset))
            except ValueError as exc:
                return JSON({"detail": str(exc), "field": "status"}, status_code=422)

    @app.get("/v1/issues/{issue_id}", tags=["read"],
             summary="One issue: timeline, chain, gate result, drafts, fixes and their verification")
    def get_issue(request: Request, issue_id: str,
                  timeline_limit: int = Query(500, ge=0, le=100_000, description="latest timeline entries; 0: all")):
        require_read(request)
        with reader() as store:
            found = issue_detail(store, issue_id, timeline_limit=timeline_limit)
        if found is None:
            return JSON({"detail": f"no issue {issue_id!r}"}, status_code=404)
        return JSON(found)

    @app.get("/v1/report", tags=["read"], summary="The report (contracts section 7 keys plus detail)")
    def get_report(request: Request, headline: bool = Query(False, description="only the contract's keys")):
        from agent.report import compute_report, headline as contract_keys

        require_read(request)
        with reader() as store:
            report = compute_report(store)
        return JSON(contract_keys(report) if headline else report)

    @app.get("/healthz", tags=["ops"], summary="Liveness and the state of the background work")
    def healthz():
        b = current()
        return JSON({"status": "ok", "version": __version__, "writer": True,
                     "triage": b.triage_state.to_json() if b.triage_enabled else None,
                     "loop": b.loop_state.to_json() if b.loop_interval_s is not None else None})

    @app.get("/metrics", tags=["ops"], summary="Prometheus exposition")
    def get_metrics(request: Request):
        require_read(request)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    # ------------------------------------------------------------------ the dashboard

    from agent.server import dashboard

    dashboard.register(app, reader=reader, allowed=allowed_read, token=token)
    return app


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI from files served here (fastapi-offline's bundle): the docs work without a network."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        import fastapi_offline
    except ImportError:
        fastapi_offline = None
    static = Path(fastapi_offline.__file__).parent / "static" if fastapi_offline else None
    if static is not None and (static / "swagger-ui-bundle.js").is_file():
        app.mount("/docs-static", StaticFiles(directory=static), name="docs-static")

        @app.get("/docs", include_in_schema=False)
        def docs(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title="selfheal API",
                                       swagger_js_url=f"{root}/docs-static/swagger-ui-bundle.js",
                                       swagger_css_url=f"{root}/docs-static/swagger-ui.css",
                                       swagger_favicon_url=f"{root}/docs-static/favicon.png",
                                       swagger_ui_parameters={"validatorUrl": None})
        return

    @app.get("/docs", include_in_schema=False)
    def docs_plain(request: Request) -> HTMLResponse:
        # Without the bundled Swagger UI: the endpoints listed from the OpenAPI document itself.
        from markupsafe import escape

        spec = app.openapi()
        rows = "".join(f"<tr><td><code>{escape(m.upper())}</code></td><td><code>{escape(p)}</code></td>"
                       f"<td>{escape(op.get('summary', ''))}</td></tr>"
                       for p, ops in spec.get("paths", {}).items() for m, op in ops.items())
        return HTMLResponse(f"<!doctype html><title>selfheal API</title><h1>selfheal API {escape(spec['info']['version'])}"
                            f"</h1><p>OpenAPI document: <a href='openapi.json'>/openapi.json</a></p>"
                            f"<table>{rows}</table>")
