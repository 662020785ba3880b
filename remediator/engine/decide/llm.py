"""The LLM planner: a model, over any OpenAI-compatible API, chooses one catalog entry by calling tools.

The tools are generated from the catalog and nothing else exists (remediator/engine/decide/llm_tools.py: called natively,
or by structured output where a server drops the tools): diagnostics run on the incident's host and their result
goes back to the model; a remediation or escalate call that validates ends the conversation; one that does not
goes back with the error, a bounded number of times. The host is the alert's, never the model's.

The model is asked only about alerts an operator opted in (`llm_alerts`; an alert's own labels never opt it in);
the others follow the runbooks. What it chooses runs without a person only where the operator's rules agree
(remediator/engine/decide/second_opinion.py). For an alert a Level 2 runbook answers
(`report:`), the runbook diagnoses and proposes, and the model only writes a few sentences over that report.
An alert that an operator's runbook always escalates (security, corruption, failover; matched in any case) is escalated without asking
the model, opted in or not. Whatever goes wrong (endpoint down, timeout, prose or garbage, rounds, time or tokens spent) the
runbook planner answers instead, and the proposal says so. What the model proposes is only data:
policy, check mode and approval judge it exactly as they judge a runbook's.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import openai
from jinja2 import Environment, PackageLoader, StrictUndefined

from remediator.engine.catalog.loader import Catalog, EntryKind
from remediator.engine.decide.llm_tools import call_schema, calls_of, catalog_tools, identity, probe
from remediator.engine.decide.planners import PlanningContext, PlanningSession, RunbookPlanner
from remediator.engine.decide.second_opinion import gate_again, second_opinion
from remediator.engine.decide.untrusted import Fence, clean
from remediator.engine.errors import ProposalError
from remediator.engine.logs import redact
from remediator.engine.model.records import ESCALATE, ActionProposal, Escalation, Report, ToolCallRecord, Transcript
from remediator.engine.settings import Settings

if TYPE_CHECKING:
    from remediator.engine.decide.evidence import DiagnosticOutcome

__all__ = ["LLMPlanner"]

log = logging.getLogger(__name__)

_PROMPTS = Environment(loader=PackageLoader("remediator.engine.decide", "prompts"), undefined=StrictUndefined, autoescape=False,
                       keep_trailing_newline=True)


class _GiveUp(Exception):
    """The model gave no usable answer; the reason goes into the incident."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


#: (base URL, model) -> the mode `auto` found by probing it once (remediator/engine/decide/llm.py: probe)
_DETECTED: dict[tuple[str, str], str] = {}


class LLMPlanner:
    """Plans through a model; the runbooks' escalations bind it, and they answer when the model fails."""

    name = "llm"

    def __init__(self, settings: Settings, catalog: Catalog, fallback: RunbookPlanner, client: openai.OpenAI | None = None):
        self.settings = settings
        self.catalog = catalog
        self.fallback = fallback
        self.client = client or openai.OpenAI(base_url=settings.llm_base_url, api_key=settings.llm_api_key.get_secret_value(),
                                              timeout=settings.llm_timeout_s, max_retries=settings.llm_max_retries)
        self.diagnostics = sorted(e.id for e in catalog.of_kind(EntryKind.DIAGNOSTIC))
        self.remediations = sorted(e.id for e in catalog.of_kind(EntryKind.REMEDIATION))
        self.tools = catalog_tools(catalog)
        self.schema = call_schema(self.tools)
        # Once the model has nothing new to ask (it repeated a diagnostic, or spent its diagnostics), only the
        # final answers are offered: a grammar-constrained small model then cannot loop on one call.
        self.final_tools = [t for t in self.tools if t["function"]["name"] in {*self.remediations, ESCALATE}]
        self.final_schema = call_schema(self.final_tools)

    def gate_again(self, ctx: PlanningContext, proposal: ActionProposal,
                   diagnose: Callable[[str, dict[str, Any]], DiagnosticOutcome]) -> str | None:
        """Right before the real run: why not to run it now (remediator/engine/decide/second_opinion.py)."""
        return gate_again(self.catalog, self.fallback, ctx, proposal, diagnose, self.name)

    def work_order(self, alertname: str, labels: dict[str, str]) -> int:
        """The runbooks' order: an operator's, never the model's."""
        return self.fallback.work_order(alertname, labels)

    def plan(self, ctx: PlanningContext, session: PlanningSession | None = None) -> ActionProposal | Escalation:
        """The model's choice, or the fallback's (saying why); the transcript is left in `session`."""
        session = session or PlanningSession()
        binding = self.fallback.binding_escalation(ctx)
        if binding is not None:   # the operator said this alert is for people; the model is not asked
            return binding
        if not self.opted_in(ctx):   # the runbooks answer, and escalate when none matches
            return self.fallback.plan(ctx, session)
        if self.fallback.writes_report(ctx):   # Level 2: the numbers, cause and proposal are the engine's; the words may be the model's
            choice = self.fallback.plan(ctx, session)
            if session.report is not None:
                session.report = self._narrate(ctx, session.report, session)
            return choice
        transcript = Transcript(planner=self.name, model=self.settings.llm_model, base_url=redact(self.settings.llm_base_url))
        session.transcript = transcript
        try:
            choice = self._converse(ctx, session, transcript)
            transcript.outcome = "proposal" if isinstance(choice, ActionProposal) else "escalation"
            return (second_opinion(self.catalog, self.fallback, ctx, choice, session.diagnose)
                    if isinstance(choice, ActionProposal) else choice)
        except _GiveUp as exc:
            log.warning("LLM planner gave up for %s: %s", ctx.ref or ctx.host, exc.reason)
            transcript.outcome, transcript.fallback_reason = "fallback", exc.reason
            note = f"LLM planner gave no usable answer ({exc.reason}); the {self.fallback.name} planner answered"
            choice = self.fallback.plan(ctx, session)
            session.transcript = transcript    # the fallback must not replace the record of what failed
            if isinstance(choice, Escalation):
                return choice.model_copy(update={"fallback": note, "reason": f"{note}: {choice.reason}"})
            return choice.model_copy(update={"fallback": note, "rationale": f"{note}: {choice.rationale}"})

    def _narrate(self, ctx: PlanningContext, report: Report, session: PlanningSession) -> Report:
        """The model's few sentences over the engine's report (fenced as data); the report unchanged if it fails."""
        transcript = Transcript(planner=self.name, model=self.settings.llm_model, base_url=redact(self.settings.llm_base_url))
        session.transcript = transcript
        fence = Fence()
        block = fence.wrap("the diagnosis", report.model_dump(exclude={"narrative"}), self.settings.llm_max_text_chars,
                           self.settings.llm_max_text_chars * 4)
        transcript.messages = [{"role": "user", "content": _PROMPTS.get_template("llm_narrative.j2").render(
            kind=report.kind, host=ctx.host, ref=ctx.ref, report_block=block)}]
        try:
            answer = self._ask(transcript.messages, self.settings.llm_timeout_s, transcript, mode="none").message
        except _GiveUp as exc:
            log.warning("LLM narrative for %s: %s", ctx.ref or ctx.host, exc.reason)
            transcript.outcome, transcript.fallback_reason = "fallback", exc.reason
            return report
        text = clean(answer.content or "", 600).strip()
        transcript.messages.append({"role": "assistant", "content": text})
        transcript.rounds, transcript.outcome = 1, "narrative"
        return report.model_copy(update={"narrative": text})

    def mode(self) -> str:
        """The tool-call mode: the setting, or (auto) what probing this endpoint and model found, once per process;
        native tools when it can do neither or cannot be probed (the conversation then fails and falls back)."""
        s = self.settings
        if s.llm_tool_mode != "auto":
            return s.llm_tool_mode
        key = (s.llm_base_url, s.llm_model)
        if key not in _DETECTED:
            try:
                found = probe(self.client, s.llm_model, s.llm_timeout_s)
            except (openai.OpenAIError, ValueError, TypeError, AttributeError, IndexError) as exc:
                log.warning("LLM planner: could not probe %s (%s); trying native tools", redact(s.llm_base_url), exc)
                return "tools"
            _DETECTED[key] = "tools" if found.mode == "none" else found.mode
            log.info("LLM planner: %s %s: %s; using %s", redact(s.llm_base_url), s.llm_model, found.seen, _DETECTED[key])
        return _DETECTED[key]

    def opted_in(self, ctx: PlanningContext) -> bool:
        """The operator asked for the model on this alert: its name is in `llm_alerts` (the alert's labels never say)."""
        name = ctx.alertname.casefold()
        return any(fnmatch.fnmatchcase(name, pattern.casefold()) for pattern in self.settings.llm_alerts)

    # ---- the conversation --------------------------------------------------------------------

    def _opening(self, ctx: PlanningContext, fence: Fence, mode: str) -> list[dict[str, Any]]:
        s = self.settings
        system = _PROMPTS.get_template("llm_system.j2").render(max_rounds=s.llm_max_rounds)
        if mode == "json_schema":   # no server-side tool section: the tools are listed in the trusted text instead
            system += _PROMPTS.get_template("llm_json_tools.j2").render(tools=[t["function"] for t in self.tools])
        # The name and severity are labels an alert's sender chose: inside the fence, never in the trusted text.
        alert_block = fence.wrap("the alert", {"alertname": ctx.alertname, "severity": ctx.severity,
                                               "labels": ctx.labels, "annotations": ctx.annotations},
                                 s.llm_max_text_chars, s.llm_max_result_chars)
        user = _PROMPTS.get_template("llm_alert.j2").render(
            host=ctx.host, ref=ctx.ref, alert_block=alert_block, diagnostics=self.diagnostics,
            remediations=self.remediations)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _converse(self, ctx: PlanningContext, session: PlanningSession, transcript: Transcript) -> ActionProposal | Escalation:
        s = self.settings
        fence = Fence()
        mode = transcript.mode = self.mode()
        messages = self._opening(ctx, fence, mode)
        transcript.messages = messages
        deadline = time.monotonic() + s.llm_budget_s
        invalid, last_error, diagnosed, deciding = 0, "", 0, False
        asked: set[str] = set()       # the diagnostics called so far, with their arguments
        for rnd in range(1, s.llm_max_rounds + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _GiveUp(f"the time budget of {s.llm_budget_s:g} s is spent")
            if transcript.prompt_tokens + transcript.completion_tokens >= s.llm_max_tokens:
                raise _GiveUp(f"the token budget of {s.llm_max_tokens} is spent")
            deciding = deciding or diagnosed >= s.llm_max_diagnostics
            choice = self._ask(messages, min(s.llm_timeout_s, remaining), transcript, mode=mode, final_only=deciding)
            message = choice.message
            transcript.rounds = rnd
            calls = calls_of(message, mode, rnd)
            if mode == "tools":
                messages.append({"role": "assistant", "content": message.content,
                                 **({"tool_calls": [{"id": c.id, "type": "function",
                                                     "function": {"name": c.name, "arguments": c.arguments}}
                                                    for c in calls]} if calls else {})})
            else:
                messages.append({"role": "assistant", "content": message.content})
            if not calls:
                cut = choice.finish_reason == "length"
                invalid, last_error = invalid + 1, (f"an answer cut at llm_max_answer_tokens ({s.llm_max_answer_tokens})"
                                                    if cut else "prose instead of a tool call")
                deciding = deciding or cut    # asked the same again, it rambles the same again: the final answers only
                if invalid > s.llm_max_invalid:
                    raise _GiveUp(f"{invalid} answers were not valid tool calls (last: {last_error})")
                messages.append({"role": "user", "content": "Answer only by calling one of the tools." if mode == "tools"
                                 else 'Answer only with one JSON object: {"name": "<tool>", "arguments": {...}}.'})
                continue
            final: ActionProposal | Escalation | None = None
            for n, call in enumerate(calls):
                diagnostic = call.name in self.diagnostics
                # Every call gets an answer (the protocol wants one per id), but only a bounded few are acted on.
                if final is not None:
                    result, record = "ignored: a final answer was already given", None
                elif n >= s.llm_max_calls_per_answer:
                    result, record = f"ignored: at most {s.llm_max_calls_per_answer} tool calls per answer are acted on", None
                elif diagnostic and diagnosed >= s.llm_max_diagnostics:
                    result, record = f"refused: at most {s.llm_max_diagnostics} diagnostics per incident; decide now", None
                elif time.monotonic() >= deadline:
                    raise _GiveUp(f"the time budget of {s.llm_budget_s:g} s is spent")
                elif diagnostic and (identity(call) in asked or deciding):
                    # A small model asks the same question again and again: a repeat counts as an invalid answer, and
                    # from then on only the final answers are offered (a diagnostic asked anyway is refused too).
                    error = (f"{call.name} was already called with these arguments; its result is above: decide now"
                             if identity(call) in asked else "no more diagnostics now: call a remediation or escalate")
                    result, record = json.dumps({"error": error}), ToolCallRecord(
                        round=rnd, name=call.name, arguments=call.arguments[:2000], kind="diagnostic", valid=False, error=error)
                    invalid, last_error, deciding = invalid + 1, error, True
                else:
                    if diagnostic:
                        asked.add(identity(call))
                    diagnosed += diagnostic
                    final, result, record = self._call(ctx, session, fence, rnd, call.name, call.arguments,
                                                       (message.content or "") if mode == "tools" else "")
                    if record is not None and not record.valid:
                        invalid, last_error = invalid + 1, record.error
                if record is not None:
                    transcript.calls.append(record)
                if mode == "tools":
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
                else:
                    messages.append({"role": "user", "content": f"Result of {clean(call.name, 100)}: {result}"})
            if final is not None:
                return final
            if invalid > s.llm_max_invalid:
                raise _GiveUp(f"{invalid} answers were not valid tool calls (last: {last_error[:300]})")
        raise _GiveUp(f"no remediation or escalation after {s.llm_max_rounds} rounds")

    def _ask(self, messages: list[dict[str, Any]], timeout_s: float, transcript: Transcript, mode: str = "tools",
             final_only: bool = False) -> Any:
        """One request's first choice: with the tools (`tools`), the call schema as response_format (`json_schema`),
        or neither; `final_only`: the remediations and escalate, no diagnostic."""
        started = time.monotonic()
        tools: Any = (self.final_tools if final_only else self.tools) if mode == "tools" else openai.NOT_GIVEN
        schema = self.final_schema if final_only else self.schema
        response_format: Any = ({"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}
                                if mode == "json_schema" else openai.NOT_GIVEN)
        try:
            response = self.client.chat.completions.create(  # the messages and tools are the API's own JSON shapes
                model=self.settings.llm_model, messages=messages,  # type: ignore[arg-type]
                tools=tools, response_format=response_format, max_tokens=self.settings.llm_max_answer_tokens,
                temperature=0, timeout=timeout_s)
        except openai.APITimeoutError:
            if timeout_s < self.settings.llm_timeout_s:
                raise _GiveUp(f"the time budget of {self.settings.llm_budget_s:g} s is spent (the model was still answering)") from None
            raise _GiveUp(f"the model did not answer within {timeout_s:g} s") from None
        except openai.APIConnectionError as exc:
            raise _GiveUp(redact(f"cannot reach the model at {self.settings.llm_base_url} ({exc.__cause__ or exc})")) from None
        except openai.APIStatusError as exc:
            raise _GiveUp(f"the model endpoint answered HTTP {exc.status_code}: {clean(str(exc.message), 200)}") from None
        except (openai.OpenAIError, ValueError, TypeError, KeyError) as exc:
            raise _GiveUp(f"the model endpoint's answer is not usable ({type(exc).__name__}: {clean(str(exc), 200)})") from None
        finally:
            transcript.latency_ms.append(int((time.monotonic() - started) * 1000))
        usage = getattr(response, "usage", None)
        if usage is not None:
            transcript.prompt_tokens += usage.prompt_tokens or 0
            transcript.completion_tokens += usage.completion_tokens or 0
        if not getattr(response, "choices", None):
            raise _GiveUp("the model endpoint answered without a choice")
        return response.choices[0]

    def _call(self, ctx: PlanningContext, session: PlanningSession, fence: Fence, rnd: int, name: str, raw: str,
              said: str) -> tuple[ActionProposal | Escalation | None, str, ToolCallRecord]:
        """One tool call: (a final answer or None, what goes back to the model, the record)."""
        def refuse(kind: str, error: str) -> tuple[None, str, ToolCallRecord]:
            return None, json.dumps({"error": error}), ToolCallRecord(round=rnd, name=clean(name, 100), arguments=raw[:2000],
                                                                      kind=kind, valid=False, error=error)

        try:
            args = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            return refuse("unknown", f"the arguments are not JSON ({exc.msg}); send a JSON object")
        if not isinstance(args, dict):
            return refuse("unknown", "the arguments must be a JSON object")

        if name == ESCALATE:
            reason = args.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                return refuse("escalate", "escalate needs a reason (a non-empty string)")
            reason = clean(reason, 1000)
            return (Escalation(reason=f"the model escalates: {reason}", planner=self.name), "escalated",
                    ToolCallRecord(round=rnd, name=name, arguments=raw[:2000], kind="escalate", valid=True))

        entry = self.catalog.entries.get(name)
        if entry is None:
            return refuse("unknown", f"there is no tool {clean(name, 100)!r}; the tools are: "
                                     f"{', '.join([*self.diagnostics, *self.remediations, ESCALATE])}")
        if entry.meta.kind == EntryKind.DIAGNOSTIC:
            try:
                params = entry.validate_params(args)
            except ProposalError as exc:
                return refuse("diagnostic", exc.message)
            if session.diagnose is None:
                result = json.dumps({"error": "diagnostics cannot run here; decide from the alert"})
            else:
                outcome = session.diagnose(entry.id, params)
                shown = outcome.report if outcome.report is not None else {"error": outcome.error}
                result = fence.wrap(f"output of {entry.id} on {ctx.host}", shown, self.settings.llm_max_text_chars,
                                    self.settings.llm_max_result_chars)
            return None, result, ToolCallRecord(round=rnd, name=name, arguments=raw[:2000], kind="diagnostic", valid=True,
                                                result=result[:4000])

        rationale = args.pop("rationale", None)
        try:
            params = entry.validate_params(args)
        except ProposalError as exc:
            return refuse("remediation", exc.message)
        why = clean(rationale if isinstance(rationale, str) and rationale.strip() else said or "(no rationale given)", 1000)
        proposal = ActionProposal(entry=entry.id, params=params, hosts=[ctx.host], rationale=f"the model: {why}",
                                  evidence=[], planner=self.name, offered=self.remediations)
        return proposal, "proposed", ToolCallRecord(round=rnd, name=name, arguments=raw[:2000], kind="remediation", valid=True)
