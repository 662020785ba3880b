"""The catalog: what remediator can ever do to a host, loaded from playbooks/ and validated.

An entry is a role `playbooks/roles/<id>/` plus its playbook `playbooks/<id>.yml`:
- `meta/argument_specs.yml`: the parameters, Ansible's own format (Ansible enforces it at run time);
  every option is named `<id>_<parameter>`; the engine speaks of `<parameter>`;
- `defaults/main.yml`: default values of optional parameters (Ansible's own place for them);
- `meta/remediator.yml`: what the entry is for, its risk class, how success is verified.
Anything wrong fails closed at load, with the file and the key in the message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import celpy
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from remediator.engine.errors import ConfigError, ProposalError

__all__ = ["Catalog", "CatalogEntry", "Drill", "EntryGate", "Probe", "markdown_table", "EntryKind", "RiskClass",
           "ParamSpec", "load_catalog", "unsafe"]

MAX_STR = 512
MAX_LIST = 8     # a list parameter names a few paths or patterns; a small model filled 32 with one repeated path


class EntryKind(StrEnum):
    REMEDIATION = "remediation"
    DIAGNOSTIC = "diagnostic"


class RiskClass(StrEnum):
    SAFE = "safe"            # policy may allow it to run without a person
    APPROVAL = "approval"    # a person approves each run
    HIGH = "high"            # two distinct approvers


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiagnosticCall(_Strict):
    """A diagnostic to run; string values may name a parameter of the calling entry as `{name}`."""

    entry: str
    params: dict[str, Any] = {}


class VerifyCheck(DiagnosticCall):
    """After the real run: run `entry` and compare fields of its report with `expect`."""

    expect: dict[str, Any]


class Probe(_Strict):
    """A command run on the lab host (podman exec) to see its state, independent of remediator."""

    argv: list[str] = Field(min_length=1)
    stdout: str | None = None      # the expected output, stripped; None: only the exit code counts
    rc: int = 0


class Drill(_Strict):
    """The entry's chaos drill: break a lab host, let the real chain fire, check the end state."""

    host: str
    inject: list[list[str]] = []                    # argv lists run on the host, in order
    fire: dict[str, str] | None = None              # labels of an alert posted to Alertmanager's API
    alert: str                                      # the alertname that must reach remediator
    verdict: Literal["allow", "approve", "deny"] | None = None
    approve: bool = False                           # approve the exact dry run shown (verdict approve)
    state: str                                      # the incident state the drill ends in
    params: dict[str, Any] = {}                     # expected parameters (a subset)
    evidence: list[str] = []                        # diagnostics that must have reported before the run
    fixed: list[Probe] = []                         # true once the fault is gone
    unharmed: list[Probe] = []                      # must hold afterwards: nothing else was harmed
    says: str = ""                                  # the incident's reason or its report's likely cause says this
    cleanup: list[list[str]] = []                   # argv lists run on the host afterwards, whatever the outcome
    timeout_s: int = 180


class Scope(_Strict):
    """A parameter whose value must be on an allow-list the inventory declares for the host (the first of
    `lists` the host has). `unit`: a unit name (a name without a suffix means its `.service`; another suffix
    must be listed as such); `path`: every path is a listed directory or below one; `pattern`: every file
    name pattern is listed as such; `value`: the value is listed exactly (a load balancer's backend)."""

    param: str
    lists: list[str] = Field(min_length=1)
    kind: Literal["unit", "path", "pattern", "value"] = "unit"


class EntryGate(_Strict):
    """What must be true on the host before a model's choice of this entry runs without a person, where no runbook
    answers the alert (remediator/engine/decide/gates.py): diagnostics by name, a CEL condition over their reports."""

    evidence: dict[str, DiagnosticCall] = Field(min_length=1)
    act_when: str
    otherwise: str = "the evidence does not show the fault this entry fixes"


class EntryMeta(_Strict):
    kind: EntryKind
    summary: str
    when_to_use: str
    when_not_to_use: str = ""
    check_mode_shows: str
    risk: RiskClass
    read_only: bool
    verify: list[VerifyCheck] = []
    diagnostics: list[DiagnosticCall] = []
    rollback: str = ""
    drill: Drill | None = None
    scope: list[Scope] = []           # what the entry may act on: allow-lists in the inventory (remediator/engine/decide/scope.py)
    gate: EntryGate | None = None     # without one, a model's choice of it for an alert no runbook answers waits for a person


class ParamSpec(_Strict):
    """One option of the argument spec, as the engine sees it."""

    name: str
    type: Literal["str", "int", "bool", "list"]
    required: bool = False
    elements: Literal["str", "int"] | None = None
    choices: list[Any] | None = None
    description: str = ""
    default: Any = None


_PY = {"str": str, "int": int, "bool": bool}


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    meta: EntryMeta
    params: dict[str, ParamSpec]
    playbook: Path
    model: type[BaseModel] = field(repr=False)
    plays: int = 1    # in its playbook: a run followed by reads in one invocation splits its events by play

    def validate_params(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Typed, complete parameters (defaults filled in), or ProposalError saying what is wrong."""
        if not isinstance(raw, dict):
            raise ProposalError(f"{self.id}: parameters must be an object, got {type(raw).__name__}")
        try:
            return self.model.model_validate(raw).model_dump()
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in exc.errors())
            raise ProposalError(f"{self.id}: {problems}") from None

    def extravars(self, params: dict[str, Any], hosts: list[str]) -> dict[str, Any]:
        """Extra vars for ansible-runner: role-prefixed names, every string marked unsafe."""
        out = {f"{self.id}_{k}": unsafe(v) for k, v in params.items() if v is not None}
        out["target_hosts"] = unsafe(",".join(hosts))
        return out

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the parameters (for the LLM tool and GET /catalog)."""
        return self.model.model_json_schema()


def markdown_table(catalog: Catalog) -> str:
    """The README's catalog table, rendered from the files (a test keeps the README in step)."""
    rows = ["| entry | kind | parameters | risk | check mode shows |", "|---|---|---|---|---|"]
    for e in sorted(catalog, key=lambda e: (e.meta.kind != EntryKind.REMEDIATION, e.id)):
        params = ", ".join(
            f"`{p.name}`{'' if p.required else '?'}: {p.type}" + (f"[{p.elements}]" if p.elements else "")
            + (f" ∈ {p.choices}" if p.choices else "") + ("" if p.required or p.default is None else f" = {p.default}")
            for p in e.params.values())
        rows.append(f"| `{e.id}` | {e.meta.kind} | {params} | {e.meta.risk} | {e.meta.check_mode_shows} |")
    return "\n".join(rows) + "\n"


def unsafe(value: Any) -> Any:
    """Mark every string unsafe so ansible-core never templates it (it templates extra vars)."""
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, list):
        return [unsafe(v) for v in value]
    if isinstance(value, dict):
        return {k: unsafe(v) for k, v in value.items()}
    return value


class Catalog:
    """All entries by id."""

    def __init__(self, entries: dict[str, CatalogEntry], root: Path):
        self.entries = entries
        self.root = root

    def get(self, entry_id: str) -> CatalogEntry:
        try:
            return self.entries[entry_id]
        except (KeyError, TypeError):
            raise ProposalError(f"unknown catalog entry {entry_id!r}; known: {', '.join(sorted(self.entries))}") from None

    def of_kind(self, kind: EntryKind) -> list[CatalogEntry]:
        return [e for e in self.entries.values() if e.meta.kind == kind]

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def _param_specs(entry_id: str, spec_file: Path, defaults: dict[str, Any]) -> dict[str, ParamSpec]:
    doc = _read_yaml(spec_file)
    try:
        options = doc["argument_specs"]["main"]["options"]
    except (KeyError, TypeError):
        raise ConfigError(f"{spec_file}: needs argument_specs.main.options") from None
    params: dict[str, ParamSpec] = {}
    prefix = f"{entry_id}_"
    for option, spec in options.items():
        if not option.startswith(prefix):
            raise ConfigError(f"{spec_file}: option {option!r} must be named {prefix}<parameter>")
        name = option[len(prefix):]
        if name == "rationale":   # the LLM planner's remediation tools add a `rationale` argument of their own
            raise ConfigError(f"{spec_file}: {option}: the parameter name 'rationale' is reserved")
        if "default" in spec:
            raise ConfigError(f"{spec_file}: {option}: put the default in defaults/main.yml, not in the spec")
        try:
            params[name] = ParamSpec(name=name, default=defaults.get(option), **spec)
        except ValidationError as exc:
            raise ConfigError(f"{spec_file}: {option}: {exc.errors()[0]['msg']}") from None
        if not params[name].required and option not in defaults:
            raise ConfigError(f"{spec_file}: optional {option} has no default in defaults/main.yml")
    return params


def _model(entry_id: str, params: dict[str, ParamSpec]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for p in params.values():
        if p.choices:
            typ: Any = Literal[tuple(p.choices)]
        elif p.type == "list":
            inner = str if p.elements in (None, "str") else int
            typ = list[inner]  # type: ignore[valid-type]
        else:
            typ = _PY[p.type]
        constraints: dict[str, Any] = {"description": p.description}
        if p.type == "str" and not p.choices:
            constraints["max_length"] = MAX_STR
        if p.type == "list":
            constraints["max_length"] = MAX_LIST
        default = ... if p.required else p.default
        fields[p.name] = (typ, Field(default, **constraints))
    config = ConfigDict(extra="forbid", strict=False, str_max_length=MAX_STR)
    return create_model(f"{entry_id}_params", __config__=config, **fields)


def _marked_plays(playbook: Path) -> int:
    """The playbook's plays, each of which must mark its tasks' processes with the run's name: a stopped run is
    ended on the host by that mark (remediator/engine/run/runner.py), and an unmarked play's processes would run on unseen."""
    doc = _read_yaml(playbook)
    plays = doc if isinstance(doc, list) else [doc]
    for play in plays:
        env = play.get("environment") if isinstance(play, dict) else None
        if not isinstance(env, dict) or "REMEDIATOR_RUN" not in env:
            name = play.get("name", "?") if isinstance(play, dict) else "?"
            raise ConfigError(f"{playbook}: play {name!r} does not set environment REMEDIATOR_RUN; add "
                              "`environment: {REMEDIATOR_RUN: \"{{ remediator_run | default('') }}\"}` to it, as "
                              "every catalog playbook has, so that a stopped run can be ended on its hosts")
    return len(plays)


def load_entry(root: Path, entry_id: str) -> CatalogEntry:
    role = root / "roles" / entry_id
    meta_file = role / "meta" / "remediator.yml"
    playbook = root / f"{entry_id}.yml"
    if not playbook.is_file():
        raise ConfigError(f"{playbook}: missing (every catalog role needs its playbook)")
    plays = _marked_plays(playbook)
    try:
        meta = EntryMeta.model_validate(_read_yaml(meta_file))
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ConfigError(f"{meta_file}: {'.'.join(map(str, e['loc']))}: {e['msg']}") from None
    defaults_file = role / "defaults" / "main.yml"
    defaults = (_read_yaml(defaults_file) or {}) if defaults_file.is_file() else {}
    params = _param_specs(entry_id, role / "meta" / "argument_specs.yml", defaults)
    for scope in meta.scope:
        if scope.param not in params:
            raise ConfigError(f"{meta_file}: scope.param {scope.param!r} is not a parameter of {entry_id}")
        if not all(name.startswith("remediator_") for name in scope.lists):
            raise ConfigError(f"{meta_file}: scope.lists of {scope.param!r}: inventory allow-lists are named remediator_*")
    return CatalogEntry(id=entry_id, meta=meta, params=params, playbook=playbook, model=_model(entry_id, params),
                        plays=plays)


def _check_gate(meta_file: Path, entry: CatalogEntry) -> None:
    """A gate's names are CEL identifiers, its `{refs}` the entry's parameters, its condition compiles."""
    assert entry.meta.gate is not None
    for name, call in entry.meta.gate.evidence.items():
        refs = {r for v in call.params.values() if isinstance(v, str) for r in re.findall(r"\{([a-z_][a-z0-9_]*)\}", v)}
        if not name.isidentifier() or refs - set(entry.params):
            raise ConfigError(f"{meta_file}: gate.evidence.{name}: a name must be an identifier (CEL uses it) and "
                              f"every {{reference}} a parameter of {entry.id} (unknown: {sorted(refs - set(entry.params))})")
    try:
        env = celpy.Environment()
        env.compile(entry.meta.gate.act_when)
    except celpy.CELParseError as exc:
        raise ConfigError(f"{meta_file}: gate.act_when: bad CEL: {exc}") from None


def load_catalog(root: Path, *overlays: Path) -> Catalog:
    """Load every entry under root/roles, then an operator's overlays' (the same layout, the same checks, never a
    shipped entry's id); fail closed on the first problem, naming the file."""
    entries: dict[str, CatalogEntry] = {}
    for where in (root, *overlays):
        roles = where / "roles"
        if not roles.is_dir():
            raise ConfigError(f"{roles}: no catalog here")
        for d in sorted(roles.iterdir()):
            if not d.is_dir():
                continue
            if d.name in entries:
                raise ConfigError(f"{d}: entry {d.name!r} is already in the catalog ({entries[d.name].playbook.parent}); "
                                  "give your own entry a name of its own")
            entries[d.name] = load_entry(where, d.name)
    for entry in entries.values():
        meta_file = entry.playbook.parent / "roles" / entry.id / "meta" / "remediator.yml"
        gate = entry.meta.gate.evidence.values() if entry.meta.gate else []
        for call in [*entry.meta.diagnostics, *entry.meta.verify, *gate]:
            target = entries.get(call.entry)
            if target is None or target.meta.kind != EntryKind.DIAGNOSTIC:
                raise ConfigError(f"{meta_file}: {call.entry!r} is not a diagnostic entry")
        if entry.meta.gate:
            _check_gate(meta_file, entry)
        if entry.meta.kind == EntryKind.DIAGNOSTIC and not entry.meta.read_only:
            raise ConfigError(f"{meta_file}: a diagnostic must be read_only")
    return Catalog(entries, root)
