"""The evidence on the pages (remediator/api/evidence_view.py): read as a person reads it, from the incidents the lab
recorded (evals/cases/lab-*/evidence.json), not as raw JSON."""
import json

import pytest

from remediator.api.evidence_view import fold, readable
from remediator.engine import PROJECT_ROOT

pytestmark = pytest.mark.unit
CASES = PROJECT_ROOT / "evals" / "cases"


def test_a_crash_loop_s_journal_is_a_few_lines_each_with_how_often():
    evidence = json.loads((CASES / "lab-crash-loop-bad-config" / "evidence.json").read_text())
    (status,) = [s for s in readable(evidence) if s.title == "service_status"]
    journal = status.lines["journal"]
    raw = evidence["service_status"]["report"]["journal"]
    assert sum(line.count for line in journal) == len(raw) and len(journal) < len(raw) / 2
    repeated = max(journal, key=lambda line: line.count)
    assert repeated.count > 1 and repeated.last_at.startswith("20") and repeated.text in raw
    assert ("active_state", "failed") in status.facts and status.params.startswith("unit=webapp")


def test_tables_for_records_and_empty_answers_said_as_such():
    evidence = json.loads((CASES / "lab-upstream-refuses" / "evidence.json").read_text())
    evidence["metric:release_broken"]["report"]["series"] = []
    sections = {s.title: s for s in readable(evidence)}
    groups = next(t for t in sections["journal_errors"].tables if t.name == "groups")
    assert groups.columns[:3] == ["unit", "pattern", "count"] and "payments-api" in groups.rows[0][1]
    assert sections["metric release_broken"].note.startswith("no series: Prometheus had none")
    assert sections["metric failing_by_route"].tables[0].columns[-1] == "value"
    unread = readable({"service_status": {"params": {"unit": "nginx"}, "report": None, "error": "not read: unit 'nginx'…"}})
    assert unread[0].note.startswith("not read: ") and not unread[0].facts


def test_lines_that_differ_only_in_time_and_pid_fold_and_others_do_not():
    lines = ["2026-12-05T07:03:35+0000 h python3[1]: ValueError: x", "2026-12-05T07:03:36+0000 h python3[2]: ValueError: x",
             "2026-12-05T07:03:37+0000 h systemd[1]: webapp.service: Failed", "not a journal line"]
    folded = fold(lines)
    assert [(line.text, line.count) for line in folded] == [(lines[0], 2), (lines[2], 1), (lines[3], 1)]
    assert folded[0].last_at == "2026-12-05T07:03:36+0000"
