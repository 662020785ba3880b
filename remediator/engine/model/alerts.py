"""Alertmanager webhook payloads (version "4"), validated at the edge.

Everything in an alert is untrusted text: it is stored and shown, never templated or executed.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = ["Alert", "AlertmanagerPayload", "LABEL_VALUE_MAX"]

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
LABEL_VALUE_MAX = 4096
ANNOTATION_MAX = 16384
#: Labels the store keeps in columns of their own (remediator/engine/store/tables.py): refused at the edge when longer, so that
#: a delivery that was acknowledged can always be taken in (on PostgreSQL a longer value fails the insert).
STORED_LABEL_MAX = {"alertname": 256, "severity": 64}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")   # in annotations: newlines and tabs are text
_LABEL_CONTROL = re.compile(r"[\x00-\x1f\x7f]")         # in labels: not even those (a line of markup, a log line)


#: label names already found valid: a storm repeats a handful of them thousands of times (bounded: names are input)
_VALID_NAMES: set[str] = set()


def _labels(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 64:
        raise ValueError(f"at most 64 labels, got {len(value)}")
    for name, v in value.items():
        if name not in _VALID_NAMES:
            if not LABEL_NAME.fullmatch(name):   # not match(): its $ would let a name end in a newline
                raise ValueError(f"label name {name[:64]!r} is not a Prometheus label name")
            if len(_VALID_NAMES) < 4096:
                _VALID_NAMES.add(name)
        if len(v) > LABEL_VALUE_MAX:
            raise ValueError(f"label {name}: value of {len(v)} characters, at most {LABEL_VALUE_MAX}")
    if _LABEL_CONTROL.search("".join(value.values())):   # one search an alert; which label, only when one has them
        name = next(n for n, v in value.items() if _LABEL_CONTROL.search(v))
        raise ValueError(f"label {name}: control characters (newlines and tabs too) are not allowed in label values")
    return value


def _annotations(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 64:
        raise ValueError(f"at most 64 annotations, got {len(value)}")
    for name, v in value.items():
        if len(v) > ANNOTATION_MAX:
            raise ValueError(f"annotation {name[:64]}: value of {len(v)} characters, at most {ANNOTATION_MAX}")
    return value


Labels = Annotated[dict[str, str], AfterValidator(_labels)]
Annotations = Annotated[dict[str, str], AfterValidator(_annotations)]


class Alert(BaseModel):
    # Unknown keys are ignored, not refused: the v4 contract may grow, and a 4xx would drop the alert.
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Annotations = {}
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = Field("", max_length=4096)
    fingerprint: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-fA-F]+$")

    @model_validator(mode="after")
    def _fits_the_store(self) -> Alert:
        for name, limit in STORED_LABEL_MAX.items():
            if len(self.labels.get(name, "")) > limit:
                raise ValueError(f"label {name}: value of {len(self.labels[name])} characters, at most {limit}")
        return self

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "none")


class AlertmanagerPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=512)
    groupKey: str = Field(max_length=8192)
    truncatedAlerts: int = Field(0, ge=0)
    groupLabels: Labels = {}
    commonLabels: Labels = {}
    commonAnnotations: Annotations = {}
    externalURL: str = Field("", max_length=4096)
    alerts: list[Alert] = Field(min_length=1, max_length=10_000)
