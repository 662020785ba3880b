"""Settings: REMEDIATOR_* environment variables over an optional YAML file over defaults.

Built by `load_settings()` and passed down; nothing reads the environment at import time.
"""
from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from remediator.engine import PROJECT_ROOT, SHIPPED
from remediator.engine.errors import ConfigError

__all__ = ["Settings", "load_settings"]


T = TypeVar("T")


class Settings(BaseSettings):
    """Every knob, with the default that fits the lab. See docs/engine.md#settings."""

    model_config = SettingsConfigDict(env_prefix="REMEDIATOR_", extra="forbid", env_nested_delimiter="__")

    # serving
    host: str = "127.0.0.1"
    port: int = 8080
    # REMEDIATOR_TOKENS="one,two" (comma-separated, so a token can be rotated with no downtime)
    tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, description="bearer tokens the API accepts")
    allow_unauthenticated: bool = False
    max_body_bytes: int = 1_048_576
    webhook_hmac_secret: SecretStr | None = Field(
        None, description="when set, webhooks must also be HMAC-signed (remediator/engine/people/signing.py)")
    webhook_hmac_window_s: int = Field(300, ge=10, description="how far a signed request's timestamp may be from now")

    # where things are
    # (in a settings file, a relative path is relative to that file; `remediator init DIR` writes one)
    data_dir: Path = Field(default_factory=lambda: _default_data_dir(), description="the store, run artifacts, "
                           "keys; default: var/ of a checkout, else $STATE_DIRECTORY or ~/.local/state/remediator")
    database_url: str | None = None
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    migrate_on_start: bool = Field(True, description="bring the store's schema to this version at start; false: "
                                   "refuse to start on an older one (the operator runs `remediator db upgrade`)")
    playbooks_dir: Path = Field(SHIPPED / "playbooks", description="the vetted catalog (shipped with remediator)")
    catalog_overlay: Path | None = Field(None, description="an operator's own entries (roles/<id>/ + <id>.yml, as in "
                                         "the catalog), validated like the shipped ones and beside them")
    inventory: Path = SHIPPED / "inventory" / "lab.yml"
    policies_dir: Path = SHIPPED / "policies"
    runbooks_dir: Path = SHIPPED / "runbooks"

    retention_days: int = Field(30, ge=0, description="delivery bodies, sent notifications and closed incidents' run "
                                "artifacts older than this are pruned daily (remediator/engine/store/retention.py); 0 keeps all")
    retention_incidents_days: int = Field(365, ge=0, description="closed incidents older than this go daily, with "
                                          "their alerts, runs and approvals, and the audit events before them behind a "
                                          "signed checkpoint (ship them first: `remediator audit export`); 0 keeps all")

    audit_verify_interval_s: int = Field(3600, ge=0, description="serve checks the whole audit chain this often (and "
                                         "5 s after start) for the metrics; 0: never")
    audit_checkpoint_key: SecretStr | None = Field(None, description="signs the checkpoint a prune of the audit chain "
                                                   "leaves (32+ characters, from outside data_dir: a systemd "
                                                   "credential, a secret mount); without it records are not pruned")
    # the audit chain's anchor (remediator/engine/store/anchor.py): each new head, where the store's writer cannot take it back
    audit_anchor_syslog: bool = Field(True, description="send each new audit head to syslog (/dev/log; the journal "
                                      "keeps it on a systemd host)")
    audit_anchor_file: Path | None = Field(None, description="also append each new audit head to this file "
                                           "(keep it off the store's disk; `chattr +a` makes it append-only)")

    # the pipeline
    planner: Literal["runbook", "llm"] = "runbook"
    target_labels: list[str] = Field(default_factory=lambda: ["instance", "host", "nodename"])
    workers: int = Field(2, ge=1, le=64, description="incidents this replica works on at once")
    role: Literal["all", "api", "worker"] = Field("all", description="what this serve does: api (webhook, API, pages, "
                                                  "intake), worker (works incidents), all; api and worker need "
                                                  "PostgreSQL (docs/scaling.md)")
    # blast radius (remediator/engine/decide/blast.py; docs/scaling.md): regions are the inventory groups named region_*
    budget_per_group: int = Field(5, ge=0, description="hosts of one inventory group worked on at once; 0: no limit")
    cap_per_region: int = Field(10, ge=0, description="hosts of one region worked on at once; 0: no limit")
    cap_global: int = Field(0, ge=0, description="hosts worked on at once across every replica; 0: the workers bound it")
    cap_per_entry: int = Field(5, ge=0, description="real runs of one entry in flight at once; 0: no limit")
    brake_hosts: int = Field(5, ge=1, description="the storm brake: more alerting hosts in a group than max(this, "
                             "brake_percent of its hosts) and every action there waits for a person")
    brake_percent: float = Field(30, gt=0, le=100)
    brake_regions: int = Field(2, ge=2, description="one alertname firing in this many regions within brake_window_s "
                               "brakes it everywhere")
    brake_window_s: int = Field(600, ge=10, description="the brake's window; a brake an admin reset does not open "
                                "again within it")
    wave_bake_s: int = Field(300, ge=0, description="after an entry's run verified in one region, how long before it "
                             "may run in another")
    wave_window_s: int = Field(3600, ge=0, description="runs older than this do not hold other regions back; 0: "
                               "no waves")
    hold_s: int = Field(30, ge=1, description="an incident a wave or a cap holds back is worked again after this")
    lease_ttl_s: float = Field(15, ge=3, le=600, description="a claimed host's lease lasts this long unless its replica "
                               "renews it (every quarter of it); a dead replica's incidents are taken over after it")
    intake_backlog_max: int = Field(50_000, ge=100, description="alerts acknowledged (or being stored) but not yet taken "
                                    "into incidents; above this the webhook answers 503 (Alertmanager retries)")
    intake_lag_max_s: float = Field(0.1, gt=0, le=60, description="under a storm a webhook is answered once taking in "
                                    "what waits would take the ingester at most this long at its recent rate: "
                                    "acknowledged alerts reach their incidents this soon, and Alertmanager is paced")
    intake_hold_s: float = Field(5, ge=0, le=60, description="at most this long a webhook's answer is held for the "
                                 "ingester to have room (intake_lag_max_s); then it is taken (pacing never refuses)")
    sender_incidents_per_minute: int = Field(300, ge=1, description="new incidents one sender's alerts may open in a "
                                             "minute; past it they are kept on one escalated overflow incident")
    correlation_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["service"], description="besides its alertname, host and sender, the labels a firing "
        "alert must share with an open incident to join it (a runbook's decisive labels; comma-separated in the "
        "environment): `service=webapp` never joins an incident about `service=api-gateway`")
    intake_batch_alerts: int = Field(5000, ge=1, description="alerts the ingester takes into incidents in one transaction")
    intake_process: bool = Field(True, description="take alerts into incidents in a process of serve's own (the "
                                 "second core), so acknowledgements never wait for the interpreter; false: a thread")
    intake_linger_s: float = Field(0.01, ge=0, le=1, description="how long the ingester waits for a bigger batch")
    gate_fresh_s: float = Field(30, ge=0, description="a runbook's evidence read this recently by planning is not read "
                                "again right before the real run (an approval usually comes later); 0: always")
    run_timeout_s: int = Field(300, ge=5)
    diagnostic_timeout_s: int = Field(120, ge=5)
    runner_forks: int = Field(5, ge=1, le=100, description="ansible-playbook --forks of each run")
    runner_warm: bool = Field(True, description="runs are forks of one Ansible started once, over host connections kept "
                              "by mitogen (docs/running.md); false: a new ansible-playbook per run")
    runner_warm_idle_s: float = Field(600, ge=10, description="the warm Ansible (and its host connections) ends after "
                                      "this long without a run; the next run starts it again")
    verify_attempts: int = Field(5, ge=1, le=50, description="times the entry's verify checks run before it escalates")
    verify_interval_s: float = Field(3.0, ge=0, le=300, description="pause between verify attempts (a service needs a moment)")
    approval_ttl_s: int = Field(1800, ge=10)
    approval_drift_max: int = Field(3, ge=1, le=20, description="approval requests per incident before a dry run that "
                                    "keeps changing escalates")
    ui_secret: SecretStr | None = Field(
        None, description="signs the approval pages' session cookies; default: a key kept in data_dir/ui-secret")
    ui_session_s: int = Field(8 * 3600, ge=60, description="how long a login to the approval pages lasts")

    # the circuit breaker (remediator/engine/decide/breaker.py)
    breaker_entry_failures: int = Field(3, ge=1, description="consecutive failed remediations of one entry that pause it")
    breaker_global_failures: int = Field(5, ge=1, description="consecutive failed remediations of any entry that pause all")
    breaker_window_s: int = Field(3600, ge=60, description="failures older than this do not count")
    breaker_failure_percent: float = Field(50, gt=0, le=100, description="an entry whose remediations across the fleet "
                                           "failed in more than this share within breaker_window_s pauses (100: off)")
    breaker_failure_min: int = Field(6, ge=1, description="ended remediations of the entry before its share counts")
    # what the boundary learns (only ever tightening): per entry x inventory group x alertname
    learn_failures: int = Field(5, ge=1, description="failed or unverified runs of an entry for one alertname on one "
                                "inventory group's hosts that make that scope approve-only")
    learn_window_s: int = Field(7 * 86400, ge=3600, description="those failures are counted over this window")
    suggest_min_approved: int = Field(5, ge=1, description="approved and verified runs of a scope, with no failure, "
                                      "before `remediator policy suggest` proposes to exempt it from the rule that asked")

    # the LLM planner (planner: llm): any OpenAI-compatible endpoint; the defaults fit a local Ollama
    # Opt-in: the model is asked only about these alerts; every other alert follows the runbooks. Only the operator
    # opts in: an alert's own label never does (anyone who can post an alert could set it).
    llm_alerts: Annotated[list[str], NoDecode] = Field(default_factory=list, description="alertnames the model is "
                                                       "asked about (globs, any case; REMEDIATOR_LLM_ALERTS=a,b)")
    llm_base_url: str = "http://localhost:11434/v1"
    llm_model: str = "qwen2.5:7b-instruct"
    llm_api_key: SecretStr = SecretStr("unused")       # Ollama and vLLM ignore it; OpenAI needs a real one
    llm_tool_mode: Literal["auto", "tools", "json_schema"] = Field(
        "auto", description="how the model calls tools: native `tools`, structured output (`json_schema`: one schema "
        "that is the anyOf of every tool's call, as response_format), or `auto` (native first; a server that answers "
        "in prose gets structured output, remembered per base URL)")
    llm_max_answer_tokens: int = Field(512, ge=16, le=8192, description="max_tokens of one answer")
    llm_timeout_s: float = Field(30, gt=0, description="one request to the model")
    llm_max_retries: int = Field(1, ge=0, le=5, description="the openai client's own retries of one request")
    llm_max_rounds: int = Field(8, ge=1, le=25, description="model turns per incident")
    llm_budget_s: float = Field(120, gt=0, description="wall time the model may take per incident")
    llm_max_tokens: int = Field(40_000, ge=1000, description="prompt + completion tokens per incident")
    llm_max_calls_per_answer: int = Field(4, ge=1, le=20, description="tool calls of one answer that are acted "
                                          "on; the rest are answered 'ignored'")
    llm_max_diagnostics: int = Field(8, ge=0, le=50, description="diagnostics the model may run per incident")
    llm_max_invalid: int = Field(2, ge=0, le=10, description="tool calls that fail validation, sent back to the model, before giving up")
    llm_max_text_chars: int = Field(2000, ge=100, description="cap on any one untrusted string shown to the model")
    llm_max_result_chars: int = Field(6000, ge=500, description="cap on one diagnostic result shown to the model")
    evals_dir: Path = SHIPPED / "evals" / "cases"

    # outside systems (all optional)
    prometheus_url: str | None = None
    prometheus_external_url: str | None = Field(None, description="the configured Prometheus' --web.external-url, when "
                                                "its alerts' generatorURL names another address than prometheus_url")
    prometheus_query_timeout_s: float = Field(10, gt=0, le=120, description="each PromQL query's timeout")
    prometheus_verify_s: int = Field(90, ge=0, description="how long the alert's expression may take to clear after a fix")
    alertmanager_url: str | None = None
    alertmanager_receiver: str = Field("remediator", min_length=1, max_length=512, description="the receiver in "
                                       "Alertmanager's config that posts to remediator: a truncated group is fetched for it alone")
    alertmanager_refetch_max: int = Field(1000, ge=1, le=10_000, description="alerts fetched for one truncated group")
    slack_webhook_url: SecretStr | None = None
    slack_signing_secret: SecretStr | None = Field(None, description="the Slack app's signing secret: approval requests "
                                                   "carry Approve / Reject buttons, and their clicks land on "
                                                   "POST /slack/interactions (docs/approvals.md)")
    slack_response_url_prefix: str = Field("https://hooks.slack.com/", description="where a click's response_url may "
                                           "point: the message is updated there with who decided; another is not called")
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    pagerduty_routing_key: SecretStr | None = None
    webhook_url: str | None = None
    teams_webhook_url: SecretStr | None = Field(None, description="a Teams incoming webhook or Workflows trigger URL: "
                                                "every event as an Adaptive Card")
    jira_url: str | None = Field(None, description="Jira's base URL: a ticket per escalated incident (docs/operating.md)")
    jira_project: str = Field("OPS", description="the project key of the tickets")
    jira_issue_type: str = "Task"
    jira_user: str | None = Field(None, description="the account (e-mail) of the API token")
    jira_api_token: SecretStr | None = None
    ticket_webhook_url: str | None = Field(None, description="a generic ticket endpoint: JSON upserted by external_id")
    public_url: str = "http://127.0.0.1:8080"
    notify_max_attempts: int = 8
    notify_claim_s: int = Field(60, ge=1, description="a message being sent is claimed this long: when its sender "
                                "dies mid-send, another replica sends it after that")
    notify_per_minute: int = Field(60, ge=1, description="messages sent per channel per minute (Slack takes about one "
                                   "a second); the rest wait in the outbox, none is dropped")

    @field_validator("llm_alerts", "correlation_labels", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        return [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else value

    @field_validator("tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        if isinstance(value, str):   # commas, or one per line (a token file)
            value = [t.strip() for t in re.split(r"[,\n]", value)]
        if isinstance(value, list):
            value = [t for t in value if str(t.get_secret_value() if isinstance(t, SecretStr) else t).strip()]
        return value

    @field_validator("tokens")
    @classmethod
    def _strong_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        # A `name:secret` token's name is public (every delivery and the audit show it): only the secret is secret.
        for n, token in enumerate(value, 1):
            raw = token.get_secret_value()
            named = NAMED_TOKEN.match(raw)
            secret = raw[named.end():] if named else raw
            if len(secret) < MIN_TOKEN_SECRET:
                who = f"the token named {named.group(1)!r}" if named else f"token {n}"
                raise ValueError(f"{who} has a secret of {len(secret)} characters; at least {MIN_TOKEN_SECRET} random ones "
                                 "are needed (make one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))', "
                                 "and write it as name:<secret>)")
        return value

    def section(self, kind: type[T]) -> T:
        """The frozen part of these settings a domain module declares (a dataclass whose fields are setting names):
        the operator keeps one flat schema; the module takes only what it reads."""
        values = {f.name: getattr(self, f.name) for f in fields(kind)}  # type: ignore[arg-type]
        return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})   # lists frozen too

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'remediator.db'}"

    @property
    def catalog_roots(self) -> list[Path]:
        """The shipped catalog, then the operator's overlay: `load_catalog(*settings.catalog_roots)`."""
        return [self.playbooks_dir, *([self.catalog_overlay] if self.catalog_overlay else [])]

    @property
    def inbox_url(self) -> str:
        """Where acknowledged webhooks wait: beside a SQLite store, a file of its own (its own write lock); else the
        store itself."""
        url = self.db_url
        if url.startswith("sqlite:///") and url.endswith(".db"):
            return url.removesuffix(".db") + "-inbox.db"
        return url

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, _EnvFileSource(settings_cls)]
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")   # systemd's LoadCredential=: secrets off the disk's data
        if credentials and Path(credentials).is_dir():
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=credentials))
        config_file = os.environ.get("REMEDIATOR_CONFIG")
        if config_file:
            sources.append(_FileSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


class _EnvFileSource(PydanticBaseSettingsSource):
    """REMEDIATOR_<NAME>_FILE: a setting read from a file (a Docker or Kubernetes secret, a file only the service user
    may read), so a secret is in neither the environment nor the settings file. Its content, one trailing newline
    dropped, is the value; REMEDIATOR_<NAME> beside it is refused (which one would win is not obvious)."""

    def get_field_value(self, field, field_name):   # pydantic-settings' abstract hook; __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            var = f"REMEDIATOR_{name.upper()}"
            path = os.environ.get(f"{var}_FILE")
            if not path:
                continue
            if os.environ.get(var):
                raise SettingsError(f"{var} and {var}_FILE are both set: keep one")
            try:
                values[name] = Path(path).read_text().removesuffix("\n")
            except OSError as exc:
                raise SettingsError(f"{var}_FILE={path}: cannot read it ({exc.strerror})") from None
        return values


class _FileSource(YamlConfigSettingsSource):
    """The settings file, its relative paths taken from where the file is (not from where serve was started)."""

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        here = Path(str(self.yaml_file_path)).resolve().parent
        for name, field in Settings.model_fields.items():
            if isinstance(values.get(name), str) and Path in _types(field.annotation) and not Path(values[name]).is_absolute():
                values[name] = str(here / values[name])
        return values


def _types(annotation: Any) -> tuple[Any, ...]:
    return (annotation, *getattr(annotation, "__args__", ()))


def _default_data_dir() -> Path:
    if SHIPPED == PROJECT_ROOT:   # a checkout
        return PROJECT_ROOT / "var"
    state = os.environ.get("STATE_DIRECTORY")   # systemd's StateDirectory=
    return Path(state.split(":")[0]) if state else Path.home() / ".local" / "state" / "remediator"


#: the fewest characters a service token's secret may have (after `name:`)
MIN_TOKEN_SECRET = 24
NAMED_TOKEN = re.compile(r"^([a-z][a-z0-9._-]{0,31}):(?=.)")   # a service token's name (`name:secret`), public

#: settings that are gone, and what to do instead
_REMOVED = {"llm_opt_in_label": "removed: an alert's own label no longer sends it to the model (any sender could set "
                                "it); list the alertnames in llm_alerts"}


def load_settings(**overrides) -> Settings:
    """Build the settings, or raise ConfigError naming the key that is wrong."""
    config_file = os.environ.get("REMEDIATOR_CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"REMEDIATOR_CONFIG={config_file}: no such file")
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        raise ConfigError(f"invalid settings ({config_file or 'environment'}): {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: "
                             f"{_REMOVED.get(str(e['loc'][0]), e['msg']) if e['loc'] else e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings ({config_file or 'environment'}): {problems}") from None
