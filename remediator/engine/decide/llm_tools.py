"""What the model can call, and how its calls come back.

The tools are generated from the catalog and nothing else: one per read-only diagnostic, one per remediation (its
JSON schema is the entry's argument spec, plus a `rationale`), and `escalate(reason)`. A server calls them natively
(`tool_calls`), or, when its chat template drops the tools (small local models), by structured output: one JSON
schema, the anyOf of every tool's call `{"name", "arguments"}`, sent as `response_format`. `probe()` finds out
which an endpoint and model do.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from remediator.engine.catalog.loader import Catalog, CatalogEntry, EntryKind
from remediator.engine.decide.untrusted import clean
from remediator.engine.model.records import ESCALATE

__all__ = ["PROBE", "ProbeResult", "ToolCall", "call_schema", "calls_of", "catalog_tools", "identity", "probe"]


def _schema(entry: CatalogEntry) -> dict[str, Any]:
    schema = entry.json_schema()
    props = {name: {k: v for k, v in prop.items() if k != "title"} for name, prop in schema.get("properties", {}).items()}
    return {"type": "object", "properties": props, "required": schema.get("required", []), "additionalProperties": False}


def catalog_tools(catalog: Catalog) -> list[dict[str, Any]]:
    """The OpenAI `tools` list: every catalog entry, and escalate; generated, never written by hand."""
    tools = []
    for entry in sorted(catalog, key=lambda e: (e.meta.kind != EntryKind.DIAGNOSTIC, e.id)):
        params = _schema(entry)
        if entry.meta.kind == EntryKind.DIAGNOSTIC:
            about = f"Read-only diagnostic. {entry.meta.summary} Use: {entry.meta.when_to_use}"
        else:
            about = (f"REMEDIATION (ends planning; risk {entry.meta.risk}). {entry.meta.summary} "
                     f"Use: {entry.meta.when_to_use}" + (f" Not: {entry.meta.when_not_to_use}" if entry.meta.when_not_to_use else ""))
            params["properties"]["rationale"] = {"type": "string", "maxLength": 300,
                                                 "description": "Why this remediation, citing the evidence."}
            params["required"] = [*params["required"], "rationale"]
        tools.append({"type": "function", "function": {"name": entry.id, "description": about.strip(), "parameters": params}})
    tools.append({"type": "function", "function": {
        "name": ESCALATE, "description": ("Hand the incident to a person: no remediation fits, the evidence is unclear, "
                                        "or it needs a human."),
        "parameters": {"type": "object", "properties": {"reason": {"type": "string", "maxLength": 500,
                                                                    "description": "What a person should look at, and why."}},
                       "required": ["reason"], "additionalProperties": False}}})
    return tools


def call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """Structured output: one JSON schema that is the anyOf of every tool's call, `{"name": …, "arguments": {…}}`."""
    return {"anyOf": [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
                       "properties": {"name": {"const": t["function"]["name"]}, "arguments": t["function"]["parameters"]}}
                      for t in tools]}


@dataclass(frozen=True)
class ToolCall:
    """One tool call, whichever way it came: a native tool call, or a structured-output answer."""

    id: str
    name: str
    arguments: str


#: the probe's first words: a stand-in server can tell a probe from a planning conversation
PROBE = "remediator tool-call check"
_PROBE_TOOL = {"type": "function", "function": {
    "name": "ok", "description": "Say that tool calls work.",
    "parameters": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                   "additionalProperties": False}}}


@dataclass(frozen=True)
class ProbeResult:
    """What an endpoint and model can do: native tool calls, structured output, or neither."""

    native_tools: bool
    structured_output: bool
    seen: str                       # what the answers were, in a line

    @property
    def mode(self) -> str:
        return "tools" if self.native_tools else "json_schema" if self.structured_output else "none"


def probe(client: Any, model: str, timeout_s: float) -> ProbeResult:
    """Two tiny requests: one with a tool to call, one with the call's schema as response_format. Raises
    openai.OpenAIError when the endpoint cannot be asked at all."""
    messages = [{"role": "user", "content": f"{PROBE}: call the tool `ok` with ok=true. Answer with the call only."}]
    native = client.chat.completions.create(model=model, messages=messages, tools=[_PROBE_TOOL], max_tokens=64,
                                            temperature=0, timeout=timeout_s).choices[0].message
    if any(c.function.name == "ok" for c in native.tool_calls or []):
        return ProbeResult(True, False, "native tool calls work")
    structured = client.chat.completions.create(
        model=model, messages=messages, max_tokens=64, temperature=0, timeout=timeout_s,
        response_format={"type": "json_schema", "json_schema": {"name": "tool_call", "schema": call_schema([_PROBE_TOOL])}}
    ).choices[0].message
    calls = calls_of(structured, "json_schema", 0)
    if calls and calls[0].name == "ok":
        return ProbeResult(False, True, f"native tool calls answered in prose ({clean(native.content or '', 80)!r}); "
                                        "structured output works")
    return ProbeResult(False, False, f"prose to both: {clean(native.content or '', 80)!r}, "
                                     f"{clean(structured.content or '', 80)!r}")


def calls_of(message: Any, mode: str, rnd: int) -> list[ToolCall]:
    """The calls in an answer: its tool_calls, or (structured output) its content as one {name, arguments}."""
    if mode == "tools":
        return [ToolCall(c.id, c.function.name, c.function.arguments or "") for c in message.tool_calls or []]
    try:
        answer = json.loads(message.content or "")
    except json.JSONDecodeError:
        return []
    if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
        return []
    args = answer.get("arguments", {})
    return [ToolCall(f"json-{rnd}", answer["name"], args if isinstance(args, str) else json.dumps(args))]


def identity(call: ToolCall) -> str:
    """A call's identity: its name and arguments, however they were spaced or ordered."""
    try:
        return call.name + json.dumps(json.loads(call.arguments or "{}"), sort_keys=True)
    except json.JSONDecodeError:
        return call.name + call.arguments
