"""FastAPI app: the Alertmanager webhook, incidents, approvals, catalog, /healthz and /metrics.

Thin on purpose: every route authenticates, reads its input and calls the Engine. Domain errors
become JSON answers in one place (`_domain_error`); nothing here decides or runs anything.
"""
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Literal

from fastapi import BackgroundTasks, Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from remediator.api import ui
from remediator.engine.decide import breaker
from remediator.engine.decide.breaker import BreakerView
from remediator.engine.errors import AuthError, Forbidden, NotFound, PayloadError, RemediatorError, StoreUnavailable
from remediator.engine.model.alerts import AlertmanagerPayload
from remediator.engine.people.approvals import ApprovalDetail, get_approval, list_approvals
from remediator.engine.people.identities import TOKEN_PREFIX, Identity, Role
from remediator.engine.people.signing import SIGNATURE_HEADER, SLACK, TIMESTAMP_HEADER, SignatureCheck
from remediator.engine.people.slack import SlackDecisions
from remediator.engine.service import Engine
from remediator.engine.store.queries import DeliveryView, IncidentDetail, IncidentSummary, get_delivery, get_incident, list_incidents

__all__ = ["create_app"]


class Decision(BaseModel):
    """An approver's decision; who decides is the token's identity, not a field."""

    comment: str = Field("", max_length=2000)
    digest: str | None = Field(None, description="the dry run's digest you looked at: required to approve (422 without "
                                                 "it), refused if the dry run changed (409)")


class BreakerReset(BaseModel):
    scope: str = Field(description="`global` or `entry:<id>`, as GET /breaker lists them")


class NewApprover(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Role = Role.APPROVER


async def authenticated(request: Request) -> Identity:
    """The identity of the bearer token: a service token of the settings, or an approver's; 401 otherwise."""
    engine: Engine = request.app.state.engine
    if not engine.settings.tokens and engine.settings.allow_unauthenticated:
        return Identity(name="anonymous", role=Role.SERVICE)
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthError("send Authorization: Bearer <token> (one of REMEDIATOR_TOKENS, or an approver's token)")
    if credential.strip().startswith(TOKEN_PREFIX):   # a person's: argon2 and the store, off the event loop
        return await run_in_threadpool(engine.identities.authenticate, credential)
    return engine.identities.authenticate(credential)   # service tokens: constant-time compares only


Auth = Annotated[Identity, Depends(authenticated)]
Verb = Literal["approve", "reject"]


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
    app.include_router(ui.router(engine))

    @app.exception_handler(RemediatorError)
    async def _domain_error(request: Request, exc: RemediatorError) -> Response:
        if request.url.path.startswith("/ui"):
            return ui.error_page(request, exc)
        if request.url.path == "/webhook/alertmanager":
            engine.metrics.webhook_requests.labels(str(exc.status)).inc()
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        return JSONResponse({"error": type(exc).__name__, "detail": exc.message}, status_code=exc.status, headers=headers)

    app.add_exception_handler(ui.LoginRequired, ui.to_login)

    @app.exception_handler(ClientDisconnect)
    async def _gone(_request: Request, _exc: ClientDisconnect) -> Response:
        # The sender hung up before its body arrived: nothing was stored, it sends again (no traceback).
        return Response(status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]]
        return JSONResponse({"error": "PayloadError", "detail": "; ".join(problems)}, status_code=422)

    signatures = (SignatureCheck(settings.webhook_hmac_secret.get_secret_value(), settings.webhook_hmac_window_s,
                                 engine.inbox.store) if settings.webhook_hmac_secret else None)

    @app.post("/webhook/alertmanager", summary="Alertmanager webhook (v4)", openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlertmanagerPayload"}}}}})
    async def webhook(request: Request, who: Auth) -> dict:
        if who.is_person:   # people decide; they do not send the alerts they would then approve
            raise Forbidden(f"{who.name}'s token is a person's ({who.role.value}): alerts are posted with a service "
                            "token (REMEDIATOR_TOKENS), the one Alertmanager's receiver holds")
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if kind != "application/json" and not kind.endswith("+json"):
            raise PayloadError(f"Content-Type {kind!r}: send the Alertmanager webhook as application/json", status=415)
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
        signed = None
        if signatures is not None:
            signed = await run_in_threadpool(signatures.verify, request.headers.get(TIMESTAMP_HEADER),
                                             request.headers.get(SIGNATURE_HEADER), bytes(body))
        try:
            ack = await engine.acknowledge_async(bytes(body), who.name, gone=request.is_disconnected)
        except Exception:
            if signatures is not None and signed is not None:
                with suppress(StoreUnavailable):   # then the retry is refused as a replay; the 503 stands
                    await run_in_threadpool(signatures.forget, signed)
            raise
        engine.metrics.webhook_requests.labels("200").inc()
        return {"status": "accepted", "delivery": ack.delivery, "alerts": ack.alerts}

    slack = (SlackDecisions(settings, engine.store, engine.catalog, engine.identities, engine.vote)
             if settings.slack_signing_secret else None)

    @app.post("/slack/interactions", summary="Slack's signed callback for a click on an approval request's button")
    async def slack_interactions(request: Request, background: BackgroundTasks) -> Response:
        if slack is None:
            raise NotFound("deciding from Slack is off: set slack_signing_secret (docs/approvals.md)")
        body = await request.body()
        if len(body) > settings.max_body_bytes:
            raise PayloadError(f"the body is over {settings.max_body_bytes} bytes", status=413)
        reply = await run_in_threadpool(slack.decide, request.headers.get(SLACK.timestamp_header),
                                        request.headers.get(SLACK.signature_header), body)
        background.add_task(slack.send, reply)   # Slack wants its answer within three seconds: the message after
        return Response(status_code=200)

    @app.get("/deliveries/{delivery_id}", response_model=DeliveryView,
             summary="one webhook: stored, and once taken in, its new and duplicate alerts and incidents")
    def delivery(delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)], _: Auth) -> DeliveryView:
        return get_delivery(engine.store, delivery_id, engine.inbox.store)

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
    def incidents(_: Auth, state: str | None = None, limit: int = Query(100, ge=1, le=1000),
                  q: str | None = Query(None, max_length=200, description="text in the id, alert, host, entry or reason")
                  ) -> list[IncidentSummary]:
        return list_incidents(engine.store, state, limit, q)

    @app.get("/incidents/{incident_id}", response_model=IncidentDetail)
    def incident(incident_id: str, _: Auth) -> IncidentDetail:
        return get_incident(engine.store, incident_id)

    @app.post("/incidents/{incident_id}/{verb}", summary="approve or reject the incident's pending dry run (approver role)")
    def incident_decide(incident_id: str, verb: Verb, decision: Decision, who: Auth) -> dict:
        state = engine.vote(who, approve=verb == "approve", incident_id=incident_id, comment=decision.comment,
                            digest=decision.digest)
        return {"incident": incident_id, "approval": state, "by": who.name}

    @app.get("/approvals", response_model=list[ApprovalDetail], summary="approval requests (default: pending)")
    def approvals_list(_: Auth, state: str = Query("pending", description="pending, approved, rejected, expired, "
                                                   "canceled, or all"), limit: int = Query(100, ge=1, le=1000)
                       ) -> list[ApprovalDetail]:
        return list_approvals(engine.store, engine.catalog, None if state == "all" else state, limit)

    @app.get("/approvals/{approval_id}", response_model=ApprovalDetail)
    def approval(approval_id: str, _: Auth) -> ApprovalDetail:
        return get_approval(engine.store, engine.catalog, approval_id)

    @app.post("/approvals/{approval_id}/{verb}", summary="approve or reject exactly this dry run (approver role)")
    def approval_decide(approval_id: str, verb: Verb, decision: Decision, who: Auth) -> dict:
        state = engine.vote(who, approve=verb == "approve", approval_id=approval_id, comment=decision.comment,
                            digest=decision.digest)
        return {"approval": approval_id, "state": state, "by": who.name}

    @app.get("/breaker", response_model=list[BreakerView], summary="circuit-breaker scopes; open ones pause automatic runs")
    def breaker_status(_: Auth) -> list[BreakerView]:
        return breaker.status(engine.store)

    @app.post("/breaker/reset", response_model=BreakerView, summary="close an open breaker scope (admin role)")
    def breaker_reset(body: BreakerReset, who: Auth) -> BreakerView:
        return breaker.reset(engine.store, who, body.scope)

    @app.get("/approvers", summary="people who may view or decide (admin role)")
    def approvers(who: Auth) -> list[dict]:
        who.require(Role.ADMIN, "list approvers")
        return engine.identities.list()

    @app.post("/approvers", status_code=201, summary="add a person; the token is in this answer only (admin role)")
    def approvers_add(new: NewApprover, who: Auth) -> dict:
        who.require(Role.ADMIN, "add approvers")
        identity, token = engine.identities.add(new.name, new.role.value, by=who.name)
        return {"name": identity.name, "role": identity.role.value, "token": token}

    @app.delete("/approvers/{name}", summary="revoke a person's token (admin role)")
    def approvers_remove(name: str, who: Auth) -> dict:
        who.require(Role.ADMIN, "remove approvers")
        engine.identities.remove(name, by=who.name)
        return {"removed": name}

    @app.get("/catalog", summary="every catalog entry, with its parameter schema")
    def catalog(_: Auth) -> list[dict]:
        return [{"id": e.id, **e.meta.model_dump(mode="json"), "parameters": e.json_schema()} for e in engine.catalog]

    def openapi() -> dict:
        # The webhook reads its body itself (size limit while streaming), so FastAPI cannot see its model;
        # the spec still documents it, for senders and for schemathesis.
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            payload = AlertmanagerPayload.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(payload.pop("$defs", {}))
            schemas["AlertmanagerPayload"] = payload
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi   # type: ignore[method-assign]   # FastAPI's documented way to customise the spec
    return app
