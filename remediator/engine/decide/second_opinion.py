"""When a model's choice may run without a person: only where the operator's own rules say the same.

A weak or steered model may pick an allowed action that the alert does not call for (restart a healthy unit). So:
- where a runbook answers the alert, the model must agree with it (same entry, same decisive parameters), and the
  runbook's evidence gate then holds the model too; it disagrees: a person decides;
- where no runbook answers (a novel alert), the entry's own gate (`gate:` in its meta/remediator.yml) must read the
  fault on the host; an entry without one, a host that cannot be read, a fault that is not there: a person decides.
Right before the real run the same evidence is read again (`gate_again`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from remediator.engine.catalog.loader import Catalog, CatalogEntry
from remediator.engine.decide.gates import read_entry_gate, summary
from remediator.engine.decide.planners import PlanningContext, PlanningSession, RunbookPlanner
from remediator.engine.decide.untrusted import clean
from remediator.engine.errors import ProposalError
from remediator.engine.model.records import ActionProposal, Escalation

if TYPE_CHECKING:
    from remediator.engine.decide.evidence import DiagnosticOutcome

__all__ = ["gate_again", "second_opinion"]

Diagnose = Callable[[str, dict[str, Any]], "DiagnosticOutcome"]


def second_opinion(catalog: Catalog, runbooks: RunbookPlanner, ctx: PlanningContext, proposal: ActionProposal,
                   diagnose: Diagnose | None) -> ActionProposal:
    """The model's proposal as it may run: unchanged where the operator's rules agree, else waiting for a person."""
    if not runbooks.matches(ctx):
        return _own_gate(catalog, proposal, diagnose)
    runbook = runbooks.plan(ctx, PlanningSession(diagnose=diagnose))
    if isinstance(runbook, ActionProposal) and runbook.entry == proposal.entry:
        entry = catalog.get(proposal.entry)
        try:
            if _decisive(entry, entry.validate_params(runbook.params)) == _decisive(entry, proposal.params):
                return proposal
        except ProposalError:   # the runbook's own parameters do not validate: no agreement to find
            pass
    said = runbook.reason if isinstance(runbook, Escalation) else f"proposes {runbook.entry} {runbook.params}"
    return proposal.model_copy(update={"needs_person": clean(
        f"the model's choice differs from this alert's runbook, which {said}: a person decides", 600)})


def gate_again(catalog: Catalog, runbooks: RunbookPlanner, ctx: PlanningContext, proposal: ActionProposal,
               diagnose: Diagnose, model: str) -> str | None:
    """Why not to run now, from fresh evidence: the runbook's gate, or (a novel alert's model choice) the entry's own.
    A proposal that waited for a person is not read again: the approver decided knowing why it waited."""
    if proposal.planner == model and proposal.needs_person:
        return None
    if proposal.planner == model and not runbooks.matches(ctx):
        entry = catalog.get(proposal.entry)
        try:
            gate = read_entry_gate(entry, entry.validate_params(proposal.params), diagnose)
        except ProposalError as exc:
            return exc.message
        if gate is None:    # it ran on its own only through a gate; none now (the catalog changed): not on its own
            return f"{entry.id} declares no evidence gate any more"
        return None if gate.act else gate.why
    return runbooks.gate_again(ctx, proposal, diagnose)


def _own_gate(catalog: Catalog, proposal: ActionProposal, diagnose: Diagnose | None) -> ActionProposal:
    entry = catalog.get(proposal.entry)
    if entry.meta.gate is None:
        why = f"{entry.id} declares no evidence gate"
    elif diagnose is None:
        why = f"{entry.id}'s evidence gate was not read (no access to the host here)"
    else:
        try:
            gate = read_entry_gate(entry, entry.validate_params(proposal.params), diagnose)
        except ProposalError as exc:
            gate, why = None, exc.message
        if gate is not None and gate.act:
            return proposal.model_copy(update={"rationale": clean(
                f"{proposal.rationale} (the evidence shows it: {summary(gate.read)})", 2000)})
        why = gate.why if gate is not None else why
    return proposal.model_copy(update={"needs_person": clean(
        f"the model chose this for an alert no runbook answers, and {why}: a person decides", 600)})


def _decisive(entry: CatalogEntry, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that choose what is acted on and how much: all but free text (a `reason`) no allow-list bounds."""
    scoped = {s.param for s in entry.meta.scope}
    return {k: v for k, v in params.items()
            if k in scoped or k not in entry.params or entry.params[k].type != "str" or entry.params[k].choices}
