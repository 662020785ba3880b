"""Prometheus' HTTP API: the alert's own expression, as evidence before and as the verdict after.

An alert from a Prometheus rule carries its expression in `generatorURL` (`…/graph?g0.expr=…`).
Evaluating it now says whether the condition still holds for THIS alert: a result series belongs
to the alert when every label they share has the same value. Read-only: only /api/v1/query.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx

__all__ = ["alert_expression", "Prometheus", "PrometheusError", "Series"]


class PrometheusError(Exception):
    pass


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


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 10.0, client: httpx.Client | None = None):
        self.url = url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout_s)

    def query(self, expr: str) -> list[Series]:
        """An instant query; PrometheusError when Prometheus cannot answer it."""
        try:
            r = self.client.get(f"{self.url}/api/v1/query", params={"query": expr})
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
