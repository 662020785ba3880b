"""N7 of the second review: the alert's name and severity reached Jira wiki markup and a Teams FactSet as they came,
so a sender could put a link ("Reset your SSO here"), an image every viewer loads, or a markdown link in
remediator's own card. Sent here exactly as the reviewer sent them: every one must stay inert text."""
import json
import re

import pytest

from remediator.engine.model.states import NotifyEvent
from remediator.engine.outbound.notify import Notification
from remediator.engine.outbound.teams import teams_payload
from remediator.engine.outbound.tickets import _description

pytestmark = [pytest.mark.security, pytest.mark.unit]
ALERTNAME = "Disk [Reset your SSO here|https://evil.example/sso] !https://evil.example/px.png!"
SEVERITY = "[Approve now](https://evil.example/a)"


def _note(**kw) -> Notification:
    base = dict(event=NotifyEvent.ESCALATED, incident_id="20261203-154006-8bcbfc", alertname=ALERTNAME,
                host="app-server-01", severity=SEVERITY, state="escalated", text="no runbook matches",
                entry="", url="http://127.0.0.1:8080/incidents/20261203-154006-8bcbfc")
    return Notification(**{**base, **kw})


def _outside_noformat(description: str) -> str:
    """What Jira renders as markup: everything outside the {noformat} blocks."""
    return "".join(description.split("{noformat}")[::2])


def test_jira_renders_the_alerts_name_and_severity_as_text():
    description = _description(_note(), "Escalated")
    outside = _outside_noformat(description)
    assert "evil.example" not in outside and "!" not in outside, outside
    assert re.findall(r"\[[^\]]*\]", outside) == ["[Incident|http://127.0.0.1:8080/incidents/20261203-154006-8bcbfc]"]
    assert ALERTNAME in description and SEVERITY in description   # shown, as typed


@pytest.mark.parametrize("closer", ["{noformat}", "{NOFORMAT}", "{noformat:title=x}", "{ noformat }"])
def test_no_spelling_of_the_closing_tag_breaks_out(closer):
    description = _description(_note(text=f"x {closer} [evil|https://evil.example] {closer}"), "Escalated")
    assert "evil.example" not in _outside_noformat(description)
    assert len(re.findall(r"\{noformat[^}]*\}", description, re.IGNORECASE)) == 2   # one block: the closer is inert


def test_teams_puts_no_sender_value_where_markdown_renders():
    card = teams_payload(_note(), "Escalated")["attachments"][0]["content"]
    facts = [f["value"] for e in card["body"] if e["type"] == "FactSet" for f in e["facts"]]
    assert not any("evil.example" in v for v in facts), facts
    runs = [i["text"] for e in card["body"] if e["type"] == "RichTextBlock" for i in e["inlines"]]
    assert any(SEVERITY in r for r in runs)                            # shown, as a TextRun
    assert "evil.example" not in json.dumps(card["actions"])
