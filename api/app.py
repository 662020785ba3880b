"""FastAPI app: the Alertmanager webhook, incidents, approvals, catalog, /healthz and /metrics.

Thin on purpose: every route authenticates, reads its input and calls the Engine. Domain errors
become JSON answers in one place (`_domain_error`); nothing here decides or runs anything.
"""
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from engine.errors import AuthError, PayloadError, RemediatorError
from engine.queries import IncidentDetail, IncidentSummary, get_incident, list_incidents
from engine.service import Engine

__all__ = ["create_app"]


class Decision(BaseModel):
    by: str = Field(min_length=1, max_length=128, description="who decides (recorded in the audit trail)")
    comment: str = Field("", max_length=2000)
    digest: str | None = Field(None, description="the preview digest you looked at; refused if it changed")


def authenticated(request: Request) -> None:
    """A bearer token from settings.tokens, compared in constant time; 401 otherwise."""
    settings = request.app.state.engine.settings
    tokens: list[bytes] = request.app.state.tokens
    if not tokens and settings.allow_unauthenticated:
        return
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthError("send Authorization: Bearer <token> (one of the configured REMEDIATOR_TOKENS)")
    given = credential.strip().encode()
    # Compare with every token, each in constant time, so timing says nothing about which one matched.
    matched = [hmac.compare_digest(given, t) for t in tokens]
    if not any(matched):
        raise AuthError("the bearer token is not one of the configured tokens")


Auth = Annotated[None, Depends(authenticated)]


def create_app(engine: Engine, *, start_engine: bool = True) -> FastAPI:
    """The app around one Engine; the engine's workers start and stop with the app."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if start_engine:
            engine.start()
        try:
            yield
        finally:
            if start_engine:
                await run_in_threadpool(engine.stop)

    app = FastAPI(title="remediator", version="0.1.0", lifespan=lifespan,
                  description="Alertmanager alerts to vetted, checked, audited Ansible fixes.")
    settings = engine.settings
    app.state.engine = engine
    app.state.tokens = [t.get_secret_value().encode() for t in settings.tokens]

    @app.exception_handler(RemediatorError)
    async def _domain_error(request: Request, exc: RemediatorError) -> JSONResponse:
        if request.url.path == "/webhook/alertmanager":
            engine.metrics.webhook_requests.labels(str(exc.status)).inc()
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        return JSONResponse({"error": type(exc).__name__, "detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]]
        return JSONResponse({"error": "PayloadError", "detail": "; ".join(problems)}, status_code=422)

    @app.post("/webhook/alertmanager", summary="Alertmanager webhook (v4)")
    async def webhook(request: Request, _: Auth) -> dict:
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadError(f"the body is {declared} bytes; at most {limit} are accepted "
                               "(lower max_alerts in the receiver, or raise REMEDIATOR_MAX_BODY_BYTES)", status=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadError(f"the body is over {limit} bytes", status=413)
        result = await run_in_threadpool(engine.receive, bytes(body))
        engine.metrics.webhook_requests.labels("200").inc()
        return {"status": "accepted", "alerts": result.alerts, "new": result.new_alerts,
                "duplicates": result.duplicates, "incidents": result.incidents}

    @app.post("/", include_in_schema=False)
    async def wrong_path() -> JSONResponse:
        return JSONResponse({"error": "NotFound", "detail": "post Alertmanager webhooks to /webhook/alertmanager"},
                            status_code=404)

    @app.get("/healthz", summary="store reachable and workers alive")
    async def healthz() -> JSONResponse:
        ok, checks = await run_in_threadpool(engine.healthy)
        return JSONResponse({"status": "ok" if ok else "unhealthy", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        body = await run_in_threadpool(engine.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/incidents", response_model=list[IncidentSummary])
    def incidents(_: Auth, state: str | None = None, limit: int = Query(100, ge=1, le=1000)) -> list[IncidentSummary]:
        return list_incidents(engine.store, state, limit)

    @app.get("/incidents/{incident_id}", response_model=IncidentDetail)
    def incident(incident_id: str, _: Auth) -> IncidentDetail:
        return get_incident(engine.store, incident_id)

    @app.post("/incidents/{incident_id}/approve", summary="run exactly the dry run shown")
    def approve(incident_id: str, decision: Decision, _: Auth) -> dict:
        state = engine.decide_approval(incident_id, approve=True, by=decision.by, comment=decision.comment,
                                       digest=decision.digest)
        return {"incident": incident_id, "state": state}

    @app.post("/incidents/{incident_id}/reject")
    def reject(incident_id: str, decision: Decision, _: Auth) -> dict:
        state = engine.decide_approval(incident_id, approve=False, by=decision.by, comment=decision.comment,
                                       digest=decision.digest)
        return {"incident": incident_id, "state": state}

    @app.get("/catalog", summary="every catalog entry, with its parameter schema")
    def catalog(_: Auth) -> list[dict]:
        return [{"id": e.id, **e.meta.model_dump(mode="json"), "parameters": e.json_schema()} for e in engine.catalog]

    return app
