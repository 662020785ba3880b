"""A label name is untrusted text too: one that ends in a newline passed the check (`re.match` with `^...$`: `$`
matches before a final newline), so a sender could put a line break into every place a label name is shown or logged.
Sent through the webhook as an attacker would: refused with a 422 that names the field, nothing stored, while the
same alert with Prometheus' own names is taken. A name found valid before is remembered (a storm repeats a handful):
that must never let a look-alike through."""
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from remediator.api.app import create_app
from remediator.engine import PROJECT_ROOT
from remediator.engine.settings import Settings
from remediator.engine.store.tables import InboxRow
from tests.engines import new_engine

pytestmark = [pytest.mark.security, pytest.mark.unit]
SAMPLE = json.loads((PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-disk.json").read_text())
TOKEN = "service-token-0123456789ab"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def _with_label(name: str) -> str:
    body = json.loads(json.dumps(SAMPLE))
    body["alerts"][0]["labels"][name] = "sshd"
    return json.dumps(body)


@pytest.mark.parametrize("name", ["service\n", "severity\n", "instance\r", "service\nalertname"])
def test_a_label_name_with_a_line_break_is_refused_and_nothing_is_stored(tmp_path, name):
    engine = new_engine(Settings(data_dir=tmp_path, tokens=[TOKEN]))
    with TestClient(create_app(engine, start_engine=False)) as client:
        ok = client.post("/webhook/alertmanager", content=_with_label("service"), headers=HEADERS)   # cached valid
        assert ok.status_code == 200
        r = client.post("/webhook/alertmanager", content=_with_label(name), headers=HEADERS)
        assert r.status_code == 422, r.text
        assert "alerts.0.labels" in r.json()["detail"] and "label name" in r.json()["detail"]
    with engine.inbox.store.read() as s:
        stored = list(s.execute(select(InboxRow.body)).scalars())
    assert [set(b["alerts"][0]["labels"]) for b in stored] == [set(SAMPLE["alerts"][0]["labels"]) | {"service"}]
