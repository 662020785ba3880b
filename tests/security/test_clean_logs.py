"""Finding 5 of the security review, as the attack: clean_logs (and disk_usage) reaching outside their roots
through a symlink, a pattern that matches everything, or a path the inventory does not list.

The real role runs against a lab container (a symlinked intermediate directory emptied its target before);
the deletion module is raced locally (a directory swapped for a symlink between find and delete); policy
reads the host's lists from the inventory, for the runbook and a model alike."""
import importlib.util
import json
import os

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.decide.policy import load_policy
from remediator.engine.model.alerts import AlertmanagerPayload
from remediator.engine.model.records import ActionProposal, RunStatus, Verdict
from remediator.engine.settings import Settings
from tests.engines import new_engine
from tests.integration.conftest import INVENTORY, on_host
from tests.scripted_llm import ScriptedLLM

pytestmark = pytest.mark.security
ALERT = json.loads((PROJECT_ROOT / "evals/cases/disk-space-low/alert.json").read_text())
HOST = "app-server-01"


def _remove_under():
    path = PROJECT_ROOT / "playbooks/roles/clean_logs/library/remove_under.py"
    spec = importlib.util.spec_from_file_location("remove_under", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.unit
def test_a_directory_swapped_for_a_symlink_after_the_find_is_not_followed(tmp_path):
    """The race: the file was found under root/sub; sub then became a link to a tree outside. Nothing there goes."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "old.log").write_text("x")
    (outside / "old.log").write_text("precious")
    (root / "sub" / "old.log").unlink()
    (root / "sub").rmdir()
    (root / "sub").symlink_to(outside)
    why = _remove_under()._remove(str(root / "sub" / "old.log"), str(root), False)
    assert why == "sub: a symlink or not a directory"
    assert (outside / "old.log").read_text() == "precious"


@pytest.mark.unit
def test_a_symlinked_file_is_not_a_file_to_delete(tmp_path):
    (tmp_path / "target.log").write_text("precious")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "old.log").symlink_to(tmp_path / "target.log")
    assert _remove_under()._remove(str(tmp_path / "root" / "old.log"), str(tmp_path / "root"), False) == "not a regular file"
    assert (tmp_path / "target.log").exists() and os.path.islink(tmp_path / "root" / "old.log")


@pytest.mark.unit
@pytest.mark.parametrize("arguments,listed", [
    ({"paths": ["/var/log/webapp"], "patterns": ["*"]}, "remediator_clean_patterns"),
    ({"paths": ["/var/lib/postgresql"]}, "remediator_clean_paths"),
    ({"paths": ["/var/log"]}, "remediator_clean_paths"),
    ({"paths": ["/var/log/webapp/../../etc"]}, "remediator_clean_paths"),
    ({"paths": ["/var/log/webapp", "/etc"]}, "remediator_clean_paths"),
])
def test_a_model_cleaning_off_the_host_lists_is_denied(tmp_path, arguments, listed):
    alert = AlertmanagerPayload.model_validate(ALERT).alerts[0]
    call = {"name": "clean_logs", "arguments": {**arguments, "rationale": "the log said so"}}
    with ScriptedLLM([{"match": f"Reference: {alert.fingerprint}.", "replies": [{"tool_calls": [call]}]}]) as model:
        engine = new_engine(Settings(data_dir=tmp_path, planner="llm", llm_alerts=["*"], llm_base_url=model.url, llm_max_retries=0))
        w = engine.what_if(alert, check=False)
    assert w.proposal is not None and w.proposal.planner == "llm" and w.proposal.entry == "clean_logs"
    assert w.decision.verdict == Verdict.DENY and listed in w.decision.reasons[0], w.decision


@pytest.mark.integration
def test_the_real_role_never_deletes_through_a_symlink(catalog, executor, lab_host):
    """/var/log/webapp/lnk -> /var/tmp/elsewhere: neither naming lnk/keep nor cleaning the root reaches there."""
    on_host("sh", "-c", "mkdir -p /var/tmp/elsewhere/keep && truncate -s 1M /var/tmp/elsewhere/keep/precious.log "
                        "/var/tmp/elsewhere/target.log /var/log/webapp/old-sec.log "
                        "&& ln -sfn /var/tmp/elsewhere /var/log/webapp/lnk "
                        "&& ln -sfn /var/tmp/elsewhere/target.log /var/log/webapp/old-link.log "
                        "&& touch -d '30 days ago' /var/tmp/elsewhere/keep/precious.log /var/tmp/elsewhere/target.log "
                        "/var/log/webapp/old-sec.log && touch -h -d '30 days ago' /var/log/webapp/lnk /var/log/webapp/old-link.log")
    entry = catalog.get("clean_logs")
    policy = load_policy(PROJECT_ROOT / "policies", catalog, load_inventory(INVENTORY))
    try:
        through = executor.run(entry, entry.validate_params({"paths": ["/var/log/webapp/lnk/keep"]}), [lab_host],
                               check=False, ident="sec-lnk", timeout_s=120)
        assert through.status == RunStatus.FAILED and "refusing to clean through a symlink" in through.preview.summary

        check = executor.run(entry, entry.validate_params({"paths": ["/var/log/webapp"]}), [lab_host],
                             check=True, ident="sec-root-check", timeout_s=120)
        proposal = ActionProposal(entry="clean_logs", params={"paths": ["/var/log/webapp"]}, hosts=[lab_host],
                                  rationale="r", planner="runbook", offered=["clean_logs"])
        assert check.preview.ok and policy.review(proposal, check.preview) is None, check.preview.summary
        assert "/var/log/webapp/old-sec.log" in check.preview.touched_paths()
        assert not [p for p in check.preview.touched_paths() if "elsewhere" in p or "lnk" in p or "old-link" in p]

        real = executor.run(entry, entry.validate_params({"paths": ["/var/log/webapp"]}), [lab_host],
                            check=False, ident="sec-root", timeout_s=120)
        assert real.status == RunStatus.SUCCESSFUL, real.preview.summary
        assert on_host("test", "-e", "/var/log/webapp/old-sec.log").returncode == 1     # the control: it does delete
        for kept in ("/var/tmp/elsewhere/keep/precious.log", "/var/tmp/elsewhere/target.log"):
            assert on_host("test", "-f", kept).returncode == 0, f"{kept} was deleted through a symlink"
        assert on_host("test", "-L", "/var/log/webapp/old-link.log").returncode == 0
    finally:
        on_host("rm", "-rf", "/var/tmp/elsewhere", "/var/log/webapp/lnk", "/var/log/webapp/old-link.log")


@pytest.mark.integration
def test_disk_usage_does_not_look_through_a_symlink(catalog, executor, lab_host):
    """Finding 17: a diagnostic followed /tmp/x -> /root. It now resolves the path on the host and refuses."""
    on_host("ln", "-sfn", "/root", "/tmp/peek")
    try:
        entry = catalog.get("disk_usage")
        run = executor.run(entry, entry.validate_params({"paths": ["/tmp/peek"]}), [lab_host], check=True,
                           ident="sec-peek", timeout_s=120)
        assert run.status == RunStatus.FAILED and "refusing to look through a symlink" in run.preview.summary
        assert lab_host not in run.reports
    finally:
        on_host("rm", "-f", "/tmp/peek")
