"""A scripted OpenAI-compatible server on loopback: `POST /v1/chat/completions`, tool calls included.

It stands in for a hosted or local model. Each script is data (a case's `model.yml`, or a dict in a
test): `match` is a string the conversation's first user message must contain, `replies` are the
model's turns. The turn to play is the number of assistant messages already in the request, so the
server keeps no conversation state and serves many conversations at once. A reply is one of
    {tool_calls: [{name, arguments}], content?}   the model calls tools (arguments: object or raw string)
    {content: "..."}                               the model answers in prose
    {status: 500, message?}                        the endpoint fails
    {raw: "..."}                                   a 200 whose body is not what the API documents
and may add `delay_s` (answer late) and `usage` (token counts). `repeat: true` on the last reply
plays it for every later turn (a model that never stops). Requests are checked the way the OpenAI
API checks them (tool names, tool messages answering every tool call, response_format) and kept for assertions.

Tool calls come back the way the request asks for them: as `tool_calls`, or, when the request sends a
`response_format` of type json_schema (structured output), as the content `{"name": …, "arguments": …}` of the
first call. `native_tools=False` plays a server whose chat template drops the tools (llama.cpp serving a small
model): a scripted call comes back as prose. The planner's capability probe (`engine.decide.llm.PROBE`) is
answered as such a server would and kept apart (`probes`), not in `requests`.
"""
from __future__ import annotations

import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from remediator.engine.decide.llm_tools import PROBE
from remediator.engine.evals.cases import EvalCase

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ids = itertools.count(1)


def _invalid(message: str, param: str | None = "messages") -> tuple[int, dict]:
    # https://platform.openai.com/docs/guides/error-codes: 400 invalid_request_error with this shape.
    return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}


def check_request(body: Any) -> tuple[int, dict] | None:
    """What the OpenAI API would refuse in a chat completion request; None when it is acceptable."""
    if not isinstance(body, dict):
        return _invalid("We could not parse the JSON body of your request.", None)
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _invalid("you must provide a model parameter", "model")
    temperature = body.get("temperature", 1)
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        return _invalid("temperature must be between 0 and 2", "temperature")
    for i, tool in enumerate(body.get("tools") or []):
        fn = tool.get("function") or {}
        if tool.get("type") != "function" or not _TOOL_NAME.match(str(fn.get("name", ""))):
            return _invalid(f"Invalid 'tools[{i}].function.name': string does not match pattern '^[a-zA-Z0-9_-]{{1,64}}$'.",
                            f"tools[{i}].function.name")
        if (fn.get("parameters") or {}).get("type", "object") != "object":
            return _invalid(f"Invalid schema for function '{fn['name']}': schema must be a JSON Schema of 'type: \"object\"'.",
                            f"tools[{i}].function.parameters")
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in {"text", "json_object", "json_schema"}:
            return _invalid("Invalid value for 'response_format.type'.", "response_format.type")
        if fmt["type"] == "json_schema" and not (isinstance(fmt.get("json_schema"), dict)
                                                 and isinstance(fmt["json_schema"].get("name"), str)
                                                 and isinstance(fmt["json_schema"].get("schema"), dict)):
            return _invalid("Missing required parameter: 'response_format.json_schema.name'.", "response_format.json_schema")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _invalid("[] is too short - 'messages'")
    open_calls: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in {"system", "user", "assistant", "tool", "developer"}:
            return _invalid(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'tool'.",
                            f"messages[{i}].role")
        if role == "tool":
            if m.get("tool_call_id") not in open_calls:
                return _invalid("Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                                "with 'tool_calls'.", f"messages.[{i}].role")
            open_calls.discard(m["tool_call_id"])
            continue
        if open_calls:
            return _invalid("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                            f"'tool_call_id'. The following tool_call_ids did not have response messages: "
                            f"{', '.join(sorted(open_calls))}", f"messages.[{i}].role")
        if role == "assistant":
            open_calls = {c["id"] for c in m.get("tool_calls") or []}
    return None


class ScriptedLLM:
    """The server; `url` is the base URL the openai client takes (…/v1)."""

    def __init__(self, scripts: list[dict[str, Any]] | None = None, native_tools: bool = True):
        self.scripts: list[dict[str, Any]] = list(scripts or [])
        self.native_tools = native_tools
        self.requests: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1"
        threading.Thread(target=self._server.serve_forever, name="scripted-llm", daemon=True).start()

    @classmethod
    def for_cases(cls, cases: list[EvalCase]) -> ScriptedLLM:
        """One script per eval case (its model.yml, or its injection's `obey`); it answers that case's conversation."""
        return cls([{"match": f"Reference: {c.ref}.", "replies": c.model_replies} for c in cases if c.model_replies])

    def add(self, match: str, replies: list[dict[str, Any]]) -> None:
        with self._lock:
            self.scripts.insert(0, {"match": match, "replies": replies})

    def __enter__(self) -> ScriptedLLM:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def conversations(self, match: str) -> list[dict[str, Any]]:
        """The requests whose first user message contains `match`."""
        return [r for r in self.requests if match in _first_user(r)]

    # ---- answering -------------------------------------------------------------------------

    def answer(self, body: dict[str, Any]) -> tuple[int, Any, float]:
        """(status, body, delay) for one request."""
        refused = check_request(body)
        if refused:
            return refused[0], refused[1], 0
        with self._lock:
            prompt = _first_user(body)
            probe = prompt.startswith(PROBE)
            (self.probes if probe else self.requests).append(body)
            script = None if probe else next((s for s in self.scripts if s["match"] in prompt), None)
        if probe:   # answered as a model that calls the tool it is asked to call (this server's tool support permitting)
            return 200, self._completion(body, {"tool_calls": [{"name": "ok", "arguments": {"ok": True}}]}), 0
        if script is None:
            return 200, self._completion(body, {"content": "I have no script for this conversation."}), 0
        turn = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        replies = script["replies"]
        if turn < len(replies):
            reply = replies[turn]
        elif replies and replies[-1].get("repeat"):
            reply = replies[-1]
        else:
            reply = {"content": "I have nothing more to say."}
        delay = float(reply.get("delay_s", 0))
        if "status" in reply:
            return int(reply["status"]), {"error": {"message": reply.get("message", "The server had an error while "
                                                     "processing your request."), "type": "server_error",
                                                     "param": None, "code": None}}, delay
        if "raw" in reply:
            return 200, reply["raw"], delay
        return 200, self._completion(body, reply), delay

    def _completion(self, body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        """The reply as this server delivers it: tool calls, structured output, or (no native tools) prose."""
        calls = reply.get("tool_calls") or []
        structured = (body.get("response_format") or {}).get("type") == "json_schema"
        if calls and structured:
            first = calls[0]
            reply = {k: v for k, v in reply.items() if k != "tool_calls"}
            reply["content"] = json.dumps({"name": first["name"], "arguments": first.get("arguments", {})})
        elif calls and body.get("tools") and not self.native_tools:
            reply = {k: v for k, v in reply.items() if k != "tool_calls"}
            reply["content"] = f"I would call {calls[0]['name']} with {json.dumps(calls[0].get('arguments', {}))}."
        return _completion(body, reply)

    def _handler(self):
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"Invalid URL (POST {self.path})", "type": "invalid_request_error"}})
                if not self.headers.get("Authorization", "").startswith("Bearer "):
                    return self._send(401, {"error": {"message": "You didn't provide an API key.", "type": "invalid_request_error"}})
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                status, answer, delay = scripted.answer(body)
                if delay:
                    time.sleep(delay)
                self._send(status, answer)

            def _send(self, status: int, answer: Any) -> None:
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass   # the client gave up (a timeout test): nothing to answer

            def log_message(self, *args):
                pass

        return Handler


def _first_user(body: dict[str, Any]) -> str:
    return next((str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "user"), "")


def _completion(body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    calls = [{"id": f"call_{next(_ids)}", "type": "function",
              "function": {"name": c["name"], "arguments": c["arguments"] if isinstance(c.get("arguments"), str)
                           else json.dumps(c.get("arguments", {}))}} for c in reply.get("tool_calls", [])]
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("content"), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    usage = {"prompt_tokens": 0, "completion_tokens": 0, **reply.get("usage", {})}
    if not reply.get("usage"):   # about four characters a token, as a tokenizer would count them
        usage["prompt_tokens"] = len(json.dumps(body["messages"])) // 4
        usage["completion_tokens"] = len(json.dumps(message)) // 4
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {"id": f"chatcmpl-{next(_ids)}", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": reply.get("finish_reason", "tool_calls" if calls else "stop")}],
            "usage": usage, "system_fingerprint": "scripted"}
