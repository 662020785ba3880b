"""Prometheus' HTTP API: the alert's own expression, as evidence before and as the verdict after.

An alert from a Prometheus rule carries its expression in `generatorURL` (`…/graph?g0.expr=…`). Whoever
posts an alert writes that URL too, so the expression is always the alerting rule of the alert's name (and
labels) that the configured Prometheus holds; the URL only picks among several such rules. Evaluating
it now says whether the condition still holds for THIS alert: a result series belongs to the alert when
every label they share has the same value. Read-only: only /api/v1/query and /api/v1/rules, each query
with a timeout.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx

from remediator.engine.logs import redact

__all__ = ["alert_expression", "Prometheus", "PrometheusError", "Series"]


class PrometheusError(Exception):
    def __init__(self, message: str):
        super().__init__(redact(message))   # the URL may carry a user and password


def alert_expression(generator_url: str) -> str | None:
    """The PromQL expression a Prometheus rule put in generatorURL, or None."""
    if not generator_url:
        return None
    exprs = parse_qs(urlsplit(generator_url).query).get("g0.expr")
    return exprs[0] if exprs and exprs[0].strip() else None


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: str


def _netloc(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{(parts.hostname or '').casefold()}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 10.0, client: httpx.Client | None = None,
                 external_url: str | None = None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.client = client or httpx.Client(timeout=timeout_s + 2)
        # the addresses this Prometheus writes into generatorURL: where we reach it, and its --web.external-url
        self.own = {_netloc(u) for u in (url, external_url) if u}

    def expression_for(self, generator_url: str, alertname: str, alert_labels: dict[str, str]) -> str | None:
        """The alert's PromQL: the alerting rule of that name (and labels) that this Prometheus holds. Where several
        match, the one generatorURL names (when the URL is this Prometheus'); None when none, or no single one."""
        try:
            r = self.client.get(f"{self.url}/api/v1/rules", params={"type": "alert"})
            groups = r.json().get("data", {}).get("groups", [])
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        queries = {rule.get("query") for g in groups for rule in g.get("rules", [])
                   if rule.get("name") == alertname and rule.get("query")
                   and all(alert_labels.get(k) == v for k, v in (rule.get("labels") or {}).items())}
        if len(queries) == 1:
            return queries.pop()
        # Whoever posts an alert writes its URL too: it may only pick among the rules, never add a query.
        named = alert_expression(generator_url) if generator_url and _netloc(generator_url) in self.own else None
        return named if named in queries else None

    def query(self, expr: str) -> list[Series]:
        """An instant query, bounded by the timeout; PrometheusError when Prometheus cannot answer it."""
        try:
            r = self.client.get(f"{self.url}/api/v1/query", params={"query": expr, "timeout": f"{self.timeout_s:g}"})
            body = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"query {expr!r} at {self.url}: {exc}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"query {expr!r}: {body.get('errorType', r.status_code)}: {body.get('error', '')}")
        data = body.get("data", {})
        if data.get("resultType") == "scalar":
            return [Series({}, str(data["result"][1]))]
        return [Series(dict(item.get("metric", {})), str(item.get("value", [0, ""])[1]))
                for item in data.get("result", [])]

    def matching(self, expr: str, alert_labels: dict[str, str]) -> list[Series]:
        """The series of `expr` that belong to this alert (shared labels equal)."""
        return [s for s in self.query(expr)
                if all(alert_labels.get(k, v) == v for k, v in s.labels.items() if k != "__name__")]

    def wait_until_clear(self, expr: str, alert_labels: dict[str, str], timeout_s: float, interval_s: float = 2.0
                         ) -> tuple[bool, str]:
        """Poll until the expression no longer returns this alert's series: (cleared, what was seen)."""
        deadline = time.monotonic() + timeout_s
        seen = ""
        while True:
            try:
                series = self.matching(expr, alert_labels)
                if not series:
                    return True, f"{expr} returns no series for this alert"
                seen = f"{expr} still returns {len(series)} series for this alert (value {series[0].value})"
            except PrometheusError as exc:
                seen = str(exc)
            if time.monotonic() >= deadline:
                return False, seen
            time.sleep(interval_s)
