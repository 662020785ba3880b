"""Loopback stand-ins for the third-party SaaS remediator talks to: Slack incoming webhooks and
the PagerDuty Events API v2. They check requests the way the documented services do (and answer
as they do), and keep what they received for the test to assert on."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


class Receivers:
    """One HTTP server on 127.0.0.1 with /slack, /pagerduty and /hook; records every accepted POST."""

    def __init__(self):
        self.received: dict[str, list[dict]] = {"slack": [], "pagerduty": [], "hook": []}
        self.fail_next: dict[str, int] = {}     # path -> how many requests to answer 503 first
        self._lock = threading.Lock()
        receivers = self

        class Handler(BaseHTTPRequestHandler):
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
                if name == "slack":
                    code, text = _slack(body)
                elif name == "pagerduty":
                    code, text = _pagerduty(body)
                elif name == "hook":
                    code, text = 200, "{}"
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
