"""Loopback stand-ins for the third-party SaaS remediator talks to: Slack incoming webhooks, the PagerDuty Events
API v2, a Microsoft Teams webhook (Adaptive Cards), Jira's REST API v2 (create issue, search by JQL label, comment)
and a generic ticket endpoint. They check requests the way the documented services do (and answer as they do), and
keep what they received for the test to assert on."""
from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

JIRA_USER, JIRA_TOKEN = "remediator@example.com", "jira-api-token-0123456789"
_CARD_ELEMENTS = {"TextBlock", "RichTextBlock", "FactSet", "Container", "ColumnSet", "Image", "ActionSet"}

PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}


def _slack(body: Any) -> tuple[int, str]:
    # https://api.slack.com/messaging/webhooks: 200 "ok"; 400 "invalid_payload" / "no_text".
    if not isinstance(body, dict):
        return 400, "invalid_payload"
    if not body.get("text") and not body.get("blocks"):
        return 400, "no_text"
    for block in body.get("blocks", []):
        if block.get("type") not in {"header", "section", "context", "divider", "actions"}:
            return 400, "invalid_blocks"
        if block.get("type") == "header" and len(block["text"]["text"]) > 150:
            return 400, "invalid_blocks"
    return 200, "ok"


def _pagerduty(body: Any) -> tuple[int, str]:
    # https://developer.pagerduty.com/docs/events-api-v2/overview: 202 on success, 400 "Invalid event".
    errors = []
    if not isinstance(body, dict):
        return 400, json.dumps({"status": "invalid event", "message": "Event object is invalid", "errors": ["not an object"]})
    if len(str(body.get("routing_key", ""))) != 32:
        errors.append("'routing_key' must be 32 characters")
    if body.get("event_action") not in PD_ACTIONS:
        errors.append("'event_action' is invalid")
    if body.get("event_action") in {"acknowledge", "resolve"} and not body.get("dedup_key"):
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if body.get("event_action") == "trigger":
        payload = body.get("payload") or {}
        for key in ("summary", "source", "severity"):
            if not payload.get(key):
                errors.append(f"'payload.{key}' is missing or blank")
        if payload.get("severity") and payload["severity"] not in PD_SEVERITIES:
            errors.append("'payload.severity' is invalid")
        if len(payload.get("summary", "")) > 1024:
            errors.append("'payload.summary' is too long")
    if errors:
        return 400, json.dumps({"status": "invalid event", "message": "Event object is invalid", "errors": errors})
    return 202, json.dumps({"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key", "")})


def _teams(body: Any, raw: bytes) -> tuple[int, str]:
    # Teams incoming webhooks / Workflows: a message with one Adaptive Card attachment; 413 past about 28 KB.
    if len(raw) > 28_000:
        return 413, "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413"
    try:
        assert body["type"] == "message"
        (attachment,) = body["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and card["version"] in {"1.2", "1.3", "1.4", "1.5"}
        assert all(e["type"] in _CARD_ELEMENTS for e in card["body"])
        assert all(a["type"] in {"Action.OpenUrl", "Action.ShowCard", "Action.ToggleVisibility"} for a in card.get("actions", []))
    except (AssertionError, KeyError, TypeError, ValueError):
        return 400, "Bad payload: not a message with an Adaptive Card"
    return 202, ""


class _Jira:
    """Issues by key, each with the label set it was made with and its comments (REST API v2's shapes)."""

    def __init__(self):
        self.issues: dict[str, dict] = {}
        self._keys = itertools.count(1)

    def handle(self, method: str, path: str, query: dict, body: Any, auth: str) -> tuple[int, str]:
        want = "Basic " + base64.b64encode(f"{JIRA_USER}:{JIRA_TOKEN}".encode()).decode()
        if auth != want:
            return 401, json.dumps({"errorMessages": ["You are not authenticated."]})
        if method == "GET" and path == "/rest/api/2/search":
            m = re.fullmatch(r'labels = "([^"]+)"', query.get("jql", [""])[0])
            if not m:
                return 400, json.dumps({"errorMessages": ["Error in the JQL Query"]})
            hits = [{"key": k} for k, i in self.issues.items() if m.group(1) in i["fields"].get("labels", [])]
            return 200, json.dumps({"total": len(hits), "issues": hits[:int(query.get("maxResults", ["50"])[0])]})
        if method == "POST" and path == "/rest/api/2/issue":
            fields = (body or {}).get("fields", {})
            errors = {k: f"{k} is required." for k in ("project", "summary", "issuetype") if not fields.get(k)}
            if "\n" in fields.get("summary", "") or len(fields.get("summary", "")) > 255:
                errors["summary"] = "The summary must be one line of at most 255 characters."
            if any(" " in label for label in fields.get("labels", [])):
                errors["labels"] = "A label cannot contain spaces."
            if errors:
                return 400, json.dumps({"errorMessages": [], "errors": errors})
            key = f"{fields['project']['key']}-{next(self._keys)}"
            self.issues[key] = {"fields": fields, "comments": []}
            return 201, json.dumps({"id": key.split("-")[1], "key": key, "self": f"/rest/api/2/issue/{key}"})
        m = re.fullmatch(r"/rest/api/2/issue/([A-Z]+-\d+)/comment", path)
        if method == "POST" and m:
            if m.group(1) not in self.issues:
                return 404, json.dumps({"errorMessages": ["Issue does not exist or you do not have permission to see it."]})
            self.issues[m.group(1)]["comments"].append(body["body"])
            return 201, json.dumps({"id": str(len(self.issues[m.group(1)]["comments"]))})
        return 404, json.dumps({"errorMessages": ["not found"]})


class _TicketDesk:
    """A generic ticket endpoint: upserts by external_id, applies each Idempotency-Key once."""

    def __init__(self):
        self.tickets: dict[str, list[dict]] = {}
        self.keys: set[str] = set()

    def handle(self, body: Any, key: str) -> tuple[int, str]:
        if not isinstance(body, dict) or not body.get("external_id") or body.get("action") not in {"open", "update"}:
            return 422, json.dumps({"error": "external_id and action (open|update) are required"})
        if not key:
            return 400, json.dumps({"error": "Idempotency-Key header is required"})
        if key in self.keys:
            return 200, json.dumps({"external_id": body["external_id"], "replayed": True})
        self.keys.add(key)
        self.tickets.setdefault(body["external_id"], []).append(body)
        return 201 if len(self.tickets[body["external_id"]]) == 1 else 200, json.dumps({"external_id": body["external_id"]})


class Receivers:
    """One HTTP server on 127.0.0.1 with /slack, /pagerduty, /teams, /jira, /ticket and /hook; records every accepted
    POST."""

    def __init__(self):
        self.received: dict[str, list[dict]] = {"slack": [], "pagerduty": [], "hook": [], "teams": [], "ticket": []}
        self.jira = _Jira()
        self.desk = _TicketDesk()
        self.fail_next: dict[str, int] = {}     # path -> how many requests to answer 503 first
        # path -> after how many accepted requests the next one is held (until `released`) and answered 503, unrecorded:
        # a sender killed meanwhile never learns whether it went
        self.hold_after: dict[str, int] = {}
        self.holding, self.released = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                if url.path.startswith("/jira/"):
                    with receivers._lock:
                        if receivers.fail_next.get("jira", 0) > 0:
                            receivers.fail_next["jira"] -= 1
                            return self._answer(503, "unavailable")
                        code, text = receivers.jira.handle("GET", url.path.removeprefix("/jira"), parse_qs(url.query),
                                                           None, self.headers.get("authorization", ""))
                    return self._answer(code, text)
                self._answer(404, "not found")

            def do_POST(self):
                # /slack/T…/B…/<secret> is Slack's shape: the first segment names the service
                name = self.path.strip("/").split("?")[0].split("/")[0]
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = None
                with receivers._lock:
                    if receivers.fail_next.get(name, 0) > 0:
                        receivers.fail_next[name] -= 1
                        return self._answer(503, "unavailable")
                    held = receivers.hold_after.get(name) == len(receivers.received.get(name, []))
                    if held:
                        del receivers.hold_after[name]
                if held:
                    receivers.holding.set()
                    receivers.released.wait(120)
                    return self._answer(503, "held")
                if name == "slack":
                    code, text = _slack(body)
                elif name == "pagerduty":
                    code, text = _pagerduty(body)
                elif name == "hook":
                    code, text = 200, "{}"
                elif name == "teams":
                    code, text = _teams(body, raw)
                elif name == "jira":
                    with receivers._lock:
                        code, text = receivers.jira.handle("POST", urlsplit(self.path).path.removeprefix("/jira"), {},
                                                           body, self.headers.get("authorization", ""))
                    return self._answer(code, text)
                elif name == "ticket":
                    with receivers._lock:
                        code, text = receivers.desk.handle(body, self.headers.get("idempotency-key", ""))
                    if code < 300:
                        with receivers._lock:
                            receivers.received[name].append(body)
                    return self._answer(code, text)
                else:
                    code, text = 404, "not found"
                if code < 300:
                    with receivers._lock:
                        receivers.received[name].append(body)
                self._answer(code, text)

            def _answer(self, code: int, text: str):
                data = text.encode()
                self.send_response(code)
                self.send_header("content-type", "application/json" if text.startswith("{") else "text/plain")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, name: str, predicate, timeout_s: float = 60) -> dict:
        """The first received body on `name` that satisfies predicate, waiting for it to arrive."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                for body in self.received[name]:
                    if predicate(body):
                        return body
            time.sleep(0.2)
        raise AssertionError(f"nothing matching arrived at /{name} in {timeout_s} s; got {self.received[name]}")

    def __enter__(self) -> Receivers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def slack_click(signing_secret: str, *, user: str, action: str, value: str, response_url: str,
                message: dict | None = None, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """What Slack sends when someone clicks a button of a message (https://api.slack.com/reference/interaction-payloads/
    block-actions): `payload=<JSON>` form-encoded, signed as Slack documents it
    (https://api.slack.com/authentication/verifying-requests-from-slack): X-Slack-Request-Timestamp, and
    X-Slack-Signature = v0=hex(HMAC-SHA256(signing secret, "v0:<timestamp>:<body>")). Computed here on its own, not
    with remediator's code."""
    import hashlib
    import hmac
    from urllib.parse import urlencode

    payload = {"type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0001"},
               "api_app_id": "A0001", "team": {"id": "T0001", "domain": "example"}, "trigger_id": "1.2.3",
               "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0001"},
               "channel": {"id": "C0001", "name": "ops"}, "response_url": response_url,
               "message": message or {"type": "message", "text": "", "blocks": []},
               "actions": [{"type": "button", "action_id": action, "block_id": "b", "value": value,
                            "text": {"type": "plain_text", "text": action.capitalize()}, "action_ts": "1700000001.0002"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    signature = "v0=" + hmac.new(signing_secret.encode(), b"v0:%d:" % ts + body, hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": signature,
                  "Content-Type": "application/x-www-form-urlencoded"}
