"""Deciding from Slack: the Approve / Reject buttons of an approval request (outbound/channels.decision_buttons).

Slack posts each click to `POST /slack/interactions`, form-encoded (`payload=<JSON>`), signed with the app's signing
secret: `X-Slack-Signature: v0=<HMAC-SHA256 of "v0:<timestamp>:<body>">` and `X-Slack-Request-Timestamp`. A click
counts only when the signature holds, the timestamp is within five minutes, the same request was not seen before (the
signatures seen are kept in the store, as the webhook's are) and the Slack user is a person here (`remediator
approvers add NAME --slack U…`). It is then that person's vote, through the same approvals.vote() as the page and the
API: their role, N distinct approvers, nobody twice, not the alert's own sender, not after expiry, and only on the
digest of the dry run the message showed: a click on an older dry run is refused, and the one waiting now is shown
with buttons of its own. The message is then updated where the click says (`response_url`, only under
`slack_response_url_prefix`): who decided, or why the click was refused.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

from remediator.engine.catalog.loader import Catalog
from remediator.engine.errors import PayloadError, RemediatorError
from remediator.engine.model.states import ApprovalState
from remediator.engine.outbound.channels import decision_buttons, mrkdwn
from remediator.engine.people.approvals import get_approval, list_approvals
from remediator.engine.people.identities import Identities, Identity
from remediator.engine.people.signing import SLACK, SignatureCheck
from remediator.engine.settings import Settings
from remediator.engine.store.db import Store

__all__ = ["Click", "Reply", "SlackDecisions", "parse_click", "WINDOW_S"]

log = logging.getLogger(__name__)
#: Slack's own advice: refuse a request whose timestamp is more than five minutes away
WINDOW_S = 300
Vote = Callable[..., str]   # Engine.vote


@dataclass(frozen=True)
class Click:
    """One click on an approval request's button, as Slack reports it."""

    user: str
    approve: bool
    approval_id: str
    digest: str
    response_url: str
    blocks: list[dict[str, Any]] = field(default_factory=list)   # the message as it was shown


@dataclass(frozen=True)
class Reply:
    """How the message is updated, and where (empty: nowhere to tell)."""

    url: str
    message: dict[str, Any]


def parse_click(body: bytes) -> Click:
    """The click in an interaction payload; PayloadError naming what is not one."""
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        action = payload["actions"][0]
        value = json.loads(action["value"])
        click = Click(user=str(payload["user"]["id"]), approve=action["action_id"] == "approve",
                      approval_id=str(value["approval"]), digest=str(value["digest"]),
                      response_url=str(payload.get("response_url", "")),
                      blocks=list((payload.get("message") or {}).get("blocks") or []))
        if payload.get("type") != "block_actions" or action["action_id"] not in ("approve", "reject"):
            raise ValueError(f"{payload.get('type')}/{action['action_id']}")
    except (KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"not a click on an approval request's Approve or Reject button ({exc})") from None
    return click


class SlackDecisions:
    """Verifies a click, makes it the person's vote, and says how the message changes."""

    def __init__(self, settings: Settings, store: Store, catalog: Catalog, identities: Identities, vote: Vote):
        assert settings.slack_signing_secret is not None
        self.check = SignatureCheck(settings.slack_signing_secret.get_secret_value(), WINDOW_S, store, SLACK)
        self.settings, self.store, self.catalog, self.identities, self.vote = settings, store, catalog, identities, vote

    def decide(self, timestamp: str | None, signature: str | None, body: bytes) -> Reply:
        """AuthError (401) for a request Slack did not sign now; otherwise the click's outcome, told in the message."""
        self.check.verify(timestamp, signature, body)
        click = parse_click(body)
        who = self.identities.by_slack(click.user)
        if who is None:
            return self._refused(click, f"Slack user {click.user} is no person remediator knows: nothing was decided. "
                                 f"An admin adds them: remediator approvers add NAME --slack {click.user}")
        try:
            state = self.vote(who, approve=click.approve, approval_id=click.approval_id, digest=click.digest,
                              comment="from Slack")
        except RemediatorError as exc:
            if exc.status >= 500:
                raise
            return self._refused(click, f"{who.name}'s click was refused: {exc.message}", self._waiting_now(click))
        return self._decided(click, who, state)

    def _decided(self, click: Click, who: Identity, state: str) -> Reply:
        a = get_approval(self.store, self.catalog, click.approval_id)
        if state == ApprovalState.PENDING:
            line = (f"{who.name} approved from Slack; {a.required} distinct approvers are needed, so it waits for "
                    "another")
            blocks = [*click.blocks, _context(line)]
        else:
            done = "approved" if state == ApprovalState.APPROVED else "rejected"
            line = (f"{done.capitalize()} by {a.decided_by} from Slack"
                    + ("; it runs once a new dry run matches the one approved" if done == "approved" else "; nothing runs"))
            blocks = [*(b for b in click.blocks if b.get("type") != "actions"), _context(line)]
        return self._reply(click, {"replace_original": True, "text": line, "blocks": blocks})

    def _refused(self, click: Click, why: str, now_waiting: list[dict[str, Any]] | None = None) -> Reply:
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(why)[:2900]}}, *(now_waiting or [])]
        return self._reply(click, {"replace_original": False, "response_type": "in_channel", "text": why[:3000],
                                   "blocks": blocks})

    def _waiting_now(self, click: Click) -> list[dict[str, Any]]:
        """The request waiting now on the clicked one's incident (a newer dry run), with buttons of its own."""
        try:
            incident = get_approval(self.store, self.catalog, click.approval_id).incident_id
        except RemediatorError:
            return []
        pending = [a for a in list_approvals(self.store, self.catalog, ApprovalState.PENDING) if a.incident_id == incident]
        if not pending or (preview := pending[0].preview) is None:
            return []
        a = pending[0]
        text = (f"*Waiting now* for incident {incident}: {a.entry} — {mrkdwn(preview.summary)}\n"
                f"<{self.settings.public_url.rstrip('/')}/ui/approvals/{a.id}|Review this dry run>")
        return [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
                decision_buttons(a.id, a.digest)]

    def _reply(self, click: Click, message: dict[str, Any]) -> Reply:
        allowed = click.response_url.startswith(self.settings.slack_response_url_prefix)
        if click.response_url and not allowed:
            log.warning("a Slack click's response_url is not under slack_response_url_prefix (%s): not called",
                        self.settings.slack_response_url_prefix)
        return Reply(url=click.response_url if allowed else "", message=message)

    @staticmethod
    def send(reply: Reply) -> None:
        """Update the message (after the click was answered: Slack wants its answer within three seconds)."""
        if not reply.url:
            return
        try:
            httpx.post(reply.url, json=reply.message, timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("could not update the Slack message: %s", exc)


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn(text)[:2900]}]}

