"""Every metric remediator's alert rules and dashboard use is one a running serve exports (a renamed metric would
otherwise leave an alert that can never fire and a panel that stays empty)."""
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.test_monitoring import dashboard_queries, rule_queries

pytestmark = pytest.mark.e2e
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
             "summary": ("_sum", "_count", "_created"), "gauge": ("",), "untyped": ("",)}


def _used(query: str) -> set[str]:
    return set(re.findall(r"\b((?:remediator|process)_[a-z_]+)\b", query))


def test_every_metric_the_rules_and_the_dashboard_use_is_exported(server):
    scraped = server.client.get("/metrics")
    assert scraped.status_code == 200
    exported = {f.name + suffix for f in text_string_to_metric_families(scraped.text) for suffix in _SUFFIXES[f.type]}
    used = {name for q in [*rule_queries(), *dashboard_queries()] for name in _used(q)}
    assert len(used) >= 15
    assert used - exported == set()
    # the names the rules lean on hardest are there with their parts
    assert {'remediator_up{part="workers"}', 'remediator_up{part="ingester"}'} <= {
        f'remediator_up{{part="{s.labels["part"]}"}}' for f in text_string_to_metric_families(scraped.text)
        for s in f.samples if f.name == "remediator_up"}
