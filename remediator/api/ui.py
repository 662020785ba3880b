"""The pages (approvals, incidents): server-rendered with Jinja2, for people with an approver token.

Log in with the token (`remediator approvers add NAME` issued it); the session lives in the store
(remediator/engine/people/sessions.py: logging out ends it, even for a copied cookie) and the browser holds its
secret and a CSRF token in a signed, HttpOnly, SameSite=Strict cookie. Reading is GET; deciding is
only ever a POST carrying that CSRF token (a link in Slack or mail opens a page and never decides:
link scanners fetch links before people click them). Every POST, the login's too, must come from
this site's own page: its Origin (or Referer) must name this host (a missing or `null` one is
refused), and the login form carries a token of its own (no login CSRF). The decisions themselves go
through the same `Engine.vote()` as the API.
"""
import hmac
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer

from remediator.api.evidence_view import readable
from remediator.engine.errors import AuthError, Forbidden, RemediatorError
from remediator.engine.model.states import FINAL_STATES, ApprovalState, IncidentState
from remediator.engine.people import sessions
from remediator.engine.people.approvals import get_approval, list_approvals
from remediator.engine.people.identities import Identity, Role
from remediator.engine.service import Engine
from remediator.engine.store.queries import get_incident, list_incidents

__all__ = ["router", "error_page", "to_login", "LoginRequired"]

COOKIE = "remediator_session"
LOGIN_COOKIE = "remediator_login"   # the login form's own CSRF token, before there is a session
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class LoginRequired(Exception):
    """No valid session: send the browser to the login page."""


def _secret(engine: Engine) -> str:
    """The signing key: the setting, or one made once and kept (0600) in the data dir."""
    if engine.settings.ui_secret:
        return engine.settings.ui_secret.get_secret_value()
    path = engine.settings.data_dir / "ui-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def router(engine: Engine) -> APIRouter:
    r = APIRouter(prefix="/ui", include_in_schema=False)
    signer = URLSafeTimedSerializer(_secret(engine), salt="remediator-ui-session")
    login_signer = URLSafeTimedSerializer(_secret(engine), salt="remediator-ui-login")
    max_age = engine.settings.ui_session_s
    secure = engine.settings.public_url.startswith("https://")

    def cookie(request: Request) -> dict:
        raw = request.cookies.get(COOKIE)
        if not raw:
            raise LoginRequired()
        try:
            data = signer.loads(raw, max_age=max_age)
        except BadSignature:
            raise LoginRequired() from None
        return data if isinstance(data, dict) else {}

    def session(request: Request) -> tuple[Identity, str]:
        data = cookie(request)
        approver_id = sessions.approver_of(engine.store, str(data.get("s", "")))   # ended by a logout: None
        who = engine.identities.by_id(approver_id) if approver_id else None
        if who is None:            # logged out, expired, or the person was removed since
            raise LoginRequired()
        return who, data["c"]

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def same_origin(request: Request) -> None:
        # Browsers send Origin with every form POST; none (or `null`: a sandboxed frame, a data: page) is refused.
        origin = request.headers.get("origin") or request.headers.get("referer") or ""
        if origin in ("", "null") or urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Forbidden(f"a form posted from {urlsplit(origin).netloc or origin or 'nowhere'!r} is refused; "
                            "use remediator's own page")

    def csrf_ok(request: Request, expected: str, given: str) -> None:
        same_origin(request)
        if not given or not hmac.compare_digest(expected.encode(), given.encode()):
            raise Forbidden("the form's CSRF token does not match your session; reload the page and try again")

    @r.get("", response_class=RedirectResponse)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/approvals", status_code=303)

    def login_page(request: Request, status: int = 200, error: str = "", next: str = "/ui/approvals") -> HTMLResponse:
        """The login form with a fresh token of its own, also set as a cookie: a login POST must carry both."""
        token = secrets.token_urlsafe(24)
        response = page(request, "login.html", status, error=error, next=_local(next), me=None, login_csrf=token)
        response.set_cookie(LOGIN_COOKIE, login_signer.dumps(token), max_age=900, httponly=True, samesite="strict",
                            secure=secure, path="/ui/login")
        return response

    @r.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/ui/approvals") -> HTMLResponse:
        return login_page(request, next=next)

    @r.post("/login")
    async def login(request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/ui/approvals",
                    login_csrf: Annotated[str, Form()] = "") -> Response:
        same_origin(request)
        try:
            expected = login_signer.loads(request.cookies.get(LOGIN_COOKIE, ""), max_age=900)
        except BadSignature:
            expected = ""
        if not expected or not hmac.compare_digest(str(expected).encode(), login_csrf.encode()):
            # Otherwise another site could log a browser in as the attacker (login CSRF).
            return login_page(request, 403, "the login form has expired or was not this site's; log in again", next)
        try:
            who = await run_in_threadpool(engine.identities.authenticate, token)
        except AuthError as exc:
            return login_page(request, 401, exc.message, next)
        if not who.is_person or who.approver_id is None:
            return login_page(request, 403, "service tokens cannot log in: the pages are for people", next)
        secret = await run_in_threadpool(sessions.begin, engine.store, who.approver_id, max_age)
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(COOKIE, signer.dumps({"s": secret, "c": secrets.token_urlsafe(24)}), max_age=max_age,
                            httponly=True, samesite="strict", secure=secure, path="/ui")
        response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
        return response

    @r.post("/logout")
    def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        _, expected = session(request)
        csrf_ok(request, expected, csrf)
        sessions.end(engine.store, str(cookie(request).get("s", "")))   # the cookie, even copied, opens nothing now
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @r.get("/approvals", response_class=HTMLResponse)
    def approvals_page(request: Request) -> HTMLResponse:
        me, csrf = session(request)
        decided = [a for a in list_approvals(engine.store, engine.catalog, None, 50) if a.state != ApprovalState.PENDING][:20]
        return page(request, "approvals.html", me=me, csrf=csrf, decided=decided,
                    pending=list_approvals(engine.store, engine.catalog, ApprovalState.PENDING))

    @r.get("/approvals/{approval_id}", response_class=HTMLResponse)
    def approval_page(request: Request, approval_id: str, error: str = "") -> HTMLResponse:
        me, csrf = session(request)
        a = get_approval(engine.store, engine.catalog, approval_id)
        reason = get_incident(engine.store, a.incident_id).reason if a.supersedes else ""
        return page(request, "approval.html", me=me, csrf=csrf, a=a, error=error[:500], incident_reason=reason,
                    can_decide=me.role in (Role.APPROVER, Role.ADMIN), evidence=readable(a.evidence))

    async def decide(request: Request, approval_id: str, approve: bool, csrf: str, digest: str, comment: str) -> Response:
        me, expected = session(request)
        csrf_ok(request, expected, csrf)
        try:
            await run_in_threadpool(lambda: engine.vote(me, approve=approve, approval_id=approval_id, comment=comment,
                                                        digest=digest or None))
        except RemediatorError as exc:
            if exc.status >= 500:
                raise
            return RedirectResponse(f"/ui/approvals/{approval_id}?error={quote(exc.message)}", status_code=303)
        a = get_approval(engine.store, engine.catalog, approval_id)
        target = f"/ui/incidents/{a.incident_id}" if a.state != ApprovalState.PENDING else f"/ui/approvals/{approval_id}"
        return RedirectResponse(target, status_code=303)

    @r.post("/approvals/{approval_id}/approve")
    async def approve(request: Request, approval_id: str, csrf: Annotated[str, Form()] = "",
                      digest: Annotated[str, Form()] = "", comment: Annotated[str, Form()] = "") -> Response:
        return await decide(request, approval_id, True, csrf, digest, comment)

    @r.post("/approvals/{approval_id}/reject")
    async def reject(request: Request, approval_id: str, csrf: Annotated[str, Form()] = "",
                     digest: Annotated[str, Form()] = "", comment: Annotated[str, Form()] = "") -> Response:
        return await decide(request, approval_id, False, csrf, digest, comment)

    @r.get("/incidents", response_class=HTMLResponse)
    def incidents_page(request: Request, state: str = "", q: str = "") -> HTMLResponse:
        me, csrf = session(request)
        rows = list_incidents(engine.store, state or None, 200, q[:200] or None)
        return page(request, "incidents.html", me=me, csrf=csrf, rows=rows, state=state, q=q[:200],
                    states=[s.value for s in IncidentState])

    @r.get("/incidents/{incident_id}", response_class=HTMLResponse)
    def incident_page(request: Request, incident_id: str) -> HTMLResponse:
        me, csrf = session(request)
        d = get_incident(engine.store, incident_id)
        pending = next((a.id for a in d.approvals if a.state == ApprovalState.PENDING), None)
        return page(request, "incident.html", me=me, csrf=csrf, d=d, pending=pending, evidence=readable(d.evidence),
                    refresh=None if d.state in FINAL_STATES else 3)

    return r


def _local(target: str) -> str:
    """Only a path on this site (no open redirect through ?next=)."""
    return target if target.startswith("/ui/") and not target.startswith("//") else "/ui/approvals"


def to_login(request: Request, _exc: Exception) -> RedirectResponse:
    """No valid session: the login page, coming back here afterwards."""
    return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)


def error_page(request: Request, exc: RemediatorError) -> HTMLResponse:
    """A domain error on a page: the same message as the API gives, as HTML."""
    return templates.TemplateResponse(request, "error.html", {"status": exc.status, "title": type(exc).__name__,
                                                              "message": exc.message, "back": "/ui/approvals", "me": None},
                                      status_code=exc.status)
