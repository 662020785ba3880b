"""Alertmanager's HTTP API (v2): the full alert set of a group, when a webhook was truncated.

`truncatedAlerts > 0` means the receiver's `max_alerts` left alerts out of the notification; the
API still has them. Their text is as untrusted as the webhook's and goes through the same model.
"""
from __future__ import annotations

import re

import httpx
from pydantic import ValidationError

from remediator.engine.logs import redact
from remediator.engine.model.alerts import Alert

__all__ = ["fetch_group_alerts", "AlertmanagerAPIError"]


class AlertmanagerAPIError(Exception):
    pass


def _matcher(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


def fetch_group_alerts(base_url: str, group_labels: dict[str, str], receiver: str, timeout_s: float = 10.0,
                       client: httpx.Client | None = None, limit: int = 1000) -> list[Alert]:
    """Active alerts of one group (its groupLabels as matchers) routed to `receiver` (a name, matched exactly),
    at most `limit` of them. A group without labels is refused: no filter would fetch every alert there is."""
    if not group_labels:
        raise AlertmanagerAPIError("the delivery names no group labels; fetching without them would pull in every alert")
    params: list[tuple[str, str | int | float | bool | None]] = [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
    params += [("filter", _matcher(k, v)) for k, v in sorted(group_labels.items())]
    params.append(("receiver", f"^(?:{re.escape(receiver)})$"))   # a name, never a pattern
    http = client or httpx.Client(timeout=timeout_s)
    try:
        r = http.get(f"{base_url.rstrip('/')}/api/v2/alerts", params=params)
        r.raise_for_status()
        raw = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise AlertmanagerAPIError(redact(f"GET {base_url}/api/v2/alerts failed: {exc}")) from None
    finally:
        if client is None:
            http.close()
    if not isinstance(raw, list):
        raise AlertmanagerAPIError("the Alertmanager API did not answer with a list of alerts")
    alerts: list[Alert] = []
    for item in raw[:limit]:
        try:
            alerts.append(Alert.model_validate({
                "status": "firing", "labels": item.get("labels", {}), "annotations": item.get("annotations", {}),
                "startsAt": item["startsAt"], "endsAt": item.get("endsAt"), "generatorURL": item.get("generatorURL", ""),
                "fingerprint": item["fingerprint"]}))
        except (KeyError, ValidationError, AttributeError):
            continue   # one malformed alert must not hide the others
    return alerts
