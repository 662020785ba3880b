"""Part of finding 17: the approval digest covered only the changed tasks' diffs and items, so every reset_db_pool
dry run on a host had the same digest whatever service it named, and an approval could be carried over to another
run. It now covers the entry, the parameters, the hosts with the inventory facts policy used, and each changed
task's message (digest required to approve: tests/security/test_approvers.py)."""
import json

import pytest

from remediator.engine.model.records import Preview, TaskResult
from remediator.engine.run.preview import build_preview
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.security, pytest.mark.unit]
EVENTS = json.loads((FIXTURES / "events" / "clean_logs-check.json").read_text())
FACTS = {"app-server-01": {"groups": ["app"], "remediator_clean_paths": ["/var/log/webapp"]}}


def _preview(**update) -> Preview:
    base = build_preview("clean_logs", EVENTS, True, ["app-server-01"])
    return base.model_copy(update={"params": {"paths": ["/var/log/webapp"], "min_age_days": 7}, "facts": FACTS, **update})


def test_the_same_changes_for_other_parameters_are_another_dry_run():
    assert _preview().digest != _preview(params={"paths": ["/var/log/webapp"], "min_age_days": 1}).digest


def test_other_inventory_facts_are_another_dry_run():
    moved = {"app-server-01": {"groups": ["db"], "remediator_clean_paths": ["/var/log/webapp"]}}
    assert _preview().digest != _preview(facts=moved).digest


def test_another_entry_is_another_dry_run():
    assert _preview().digest != _preview(entry="rollback_release").digest


def test_a_changed_tasks_message_is_part_of_it():
    base = _preview()
    host = base.hosts[0]
    changed = next(i for i, t in enumerate(host.tasks) if t.changed)
    tasks: list[TaskResult] = list(host.tasks)
    tasks[changed] = tasks[changed].model_copy(update={"msg": tasks[changed].msg + " and something else"})
    other = base.model_copy(update={"hosts": [host.model_copy(update={"tasks": tasks})]})
    assert base.digest != other.digest


def test_the_control_the_same_dry_run_has_the_same_digest_even_read_back():
    stored = json.loads(_preview().model_dump_json())
    assert Preview.model_validate(stored).digest == _preview().digest
