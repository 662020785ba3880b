"""N13 of the second review (L5 of the first): the engine parsed the inventory once, so a unit taken off a host's
allow-list, or a host moved into another group, was not seen by policy until a restart, while ansible-playbook read
the file anew at every run; the digest's "facts" were that stale view. Now the inventory is read again when its
content changes (before each decision, dry run and real run, and every few seconds in serve), and the digest holds
the inventory's hash, so an approval given before an edit does not carry over to a run after it."""
import json

import pytest

from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.model.records import Preview
from remediator.engine.settings import Settings
from tests.engines import new_engine
from tests.security.test_scope import _payload, _verdicts

pytestmark = [pytest.mark.security, pytest.mark.unit]
LISTED = "all:\n  vars:\n    remediator_services: [webapp, api-gateway]\n  hosts:\n    api-server-01: {}\n"
UNLISTED = "all:\n  vars:\n    remediator_services: [webapp]\n  hosts:\n    api-server-01: {}\n"


def _verdict(engine) -> str:
    """The decision path's answer (refused: off the allow-lists, for the gate and for policy alone; test_scope.py)."""
    return _verdicts(engine, _payload("restart_service", ["api-gateway"]))["api-gateway"]


def test_a_unit_taken_off_the_list_is_refused_without_a_restart(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(LISTED)
    engine = new_engine(Settings(data_dir=tmp_path / "data", inventory=inventory))
    assert _verdict(engine) == "allow"                      # the control
    inventory.write_text(UNLISTED)                          # the operator takes api-gateway off the list
    assert _verdict(engine) == "refused"
    assert engine.policy.inventory.host_vars["api-server-01"]["remediator_services"] == ["webapp"]


def test_an_edit_ansible_cannot_read_keeps_the_view_before(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(UNLISTED)
    loaded = load_inventory(inventory)
    inventory.write_text("all: [this is: not an inventory\n")
    assert loaded.refresh() is False and loaded.hosts == {"api-server-01": []}
    inventory.write_text(LISTED)
    assert loaded.refresh() is True and loaded.host_vars["api-server-01"]["remediator_services"] == ["webapp", "api-gateway"]
    assert loaded.refresh() is False   # unchanged: not read again


def test_the_digest_binds_the_inventory_it_was_run_with(tmp_path):
    preview = Preview(entry="restart_service", hosts=[], summary="s", ok=True, params={"unit": "webapp"})
    before, after = (preview.model_copy(update={"inventory": sha}) for sha in ("a" * 64, "b" * 64))
    assert before.digest != after.digest
    # a preview stored before the hash was recorded keeps the digest its approval holds
    assert Preview.model_validate(json.loads(preview.model_dump_json())).digest == preview.digest
