"""Setting remediator up as an operator does: `remediator init`, its settings file, a catalog overlay, the store's
migrations by hand, the systemd unit."""
import os
import shutil
import subprocess
from unittest import mock

import pytest
import yaml
from typer.testing import CliRunner

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.cli.main import app as cli
from remediator.engine.config_tree import init_tree, systemd_unit
from remediator.engine.decide.policy import load_policy
from remediator.engine.errors import ConfigError
from remediator.engine.settings import load_settings

pytestmark = pytest.mark.unit
runner = CliRunner()


def _overlay_entry(overlay, entry_id: str = "unit_state") -> None:
    """A copy of the shipped service_status diagnostic under a name of its own (an operator's entry)."""
    src = PROJECT_ROOT / "playbooks"
    shutil.copytree(src / "roles" / "service_status", overlay / "roles" / entry_id)
    for f in [overlay / f"{entry_id}.yml", *(overlay / "roles" / entry_id).rglob("*.yml")]:
        text = (src / "service_status.yml").read_text() if f.name == f"{entry_id}.yml" else f.read_text()
        f.write_text(text.replace("service_status", entry_id))


def test_init_writes_a_tree_serve_can_use(tmp_path, monkeypatch):
    report = init_tree(tmp_path / "conf")
    assert report.config.stat().st_mode & 0o077 == 0   # it holds the token
    _overlay_entry(tmp_path / "conf" / "catalog")
    monkeypatch.setenv("REMEDIATOR_CONFIG", str(report.config))
    monkeypatch.chdir("/")   # relative paths in the file are the file's, not the working directory's
    settings = load_settings()
    assert settings.data_dir == tmp_path / "conf" / "var"
    assert settings.inventory == tmp_path / "conf" / "inventory.yml"
    assert settings.policies_dir == tmp_path / "conf" / "policies"
    assert [t.get_secret_value() for t in settings.tokens] == [report.token] and len(report.token) >= 32
    assert report.token.startswith("alertmanager:")      # named: deliveries and the audit say who posted
    catalog = load_catalog(*settings.catalog_roots)
    assert "unit_state" in catalog.entries and "restart_service" in catalog.entries
    assert catalog.get("unit_state").playbook == tmp_path / "conf" / "catalog" / "unit_state.yml"
    # the copies it wrote load as the shipped ones do
    load_policy(settings.policies_dir, catalog, load_inventory(settings.inventory))


def test_init_never_writes_over_a_tree(tmp_path):
    init_tree(tmp_path / "conf")
    before = (tmp_path / "conf" / "remediator.yml").read_text()
    with pytest.raises(ConfigError, match="set up already"):
        init_tree(tmp_path / "conf")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    result = runner.invoke(cli, ["init", str(tmp_path / "other")])
    assert result.exit_code != 0 and "not empty" in str(result.exception)
    assert (tmp_path / "conf" / "remediator.yml").read_text() == before
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]
    told = runner.invoke(cli, ["init", str(tmp_path / "third")])
    assert told.exit_code == 0 and "`alertmanager` is its public name" in told.output
    assert f"next: edit {tmp_path / 'third' / 'inventory.yml'}" in told.output      # where, not a template


def test_an_overlay_entry_may_not_take_a_shipped_entrys_name(tmp_path):
    _overlay_entry(tmp_path, "restart_service")
    with pytest.raises(ConfigError, match="already in the catalog"):
        load_catalog(PROJECT_ROOT / "playbooks", tmp_path)


def test_an_overlay_entry_is_validated_like_a_shipped_one(tmp_path):
    _overlay_entry(tmp_path)
    meta = tmp_path / "roles" / "unit_state" / "meta" / "remediator.yml"
    meta.write_text(meta.read_text().replace("read_only: true", "read_only: false"))
    with pytest.raises(ConfigError, match=r"unit_state/meta/remediator.yml: a diagnostic must be read_only"):
        load_catalog(PROJECT_ROOT / "playbooks", tmp_path)


def test_migrations_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("REMEDIATOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REMEDIATOR_MIGRATE_ON_START", "false")
    behind = runner.invoke(cli, ["db", "current"])
    assert behind.exit_code == 1 and "none (empty)" in behind.output and "remediator db upgrade" in behind.output
    refused = runner.invoke(cli, ["incidents", "list"])   # a command that needs the store refuses an old schema
    assert refused.exit_code != 0 and "run `remediator db upgrade`" in str(refused.exception)
    upgraded = runner.invoke(cli, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    current = runner.invoke(cli, ["db", "current"])
    assert current.exit_code == 0 and "up to date" in current.output
    assert runner.invoke(cli, ["incidents", "list"]).exit_code == 0


def test_the_systemd_unit_is_clean_for_systemd_analyze(tmp_path):
    executable = tmp_path / "bin" / "remediator"
    executable.parent.mkdir()
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    unit = tmp_path / "remediator.service"
    unit.write_text(systemd_unit(tmp_path / "remediator.yml", executable))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert (out.returncode, out.stdout + out.stderr) == (0, "")
    for line in ("NoNewPrivileges=true", "ProtectSystem=strict", "User=remediator", "StateDirectory=remediator",
                 "KillMode=control-group",   # a run's ansible-playbook goes with the service (docs/reliability.md)
                 f"ExecStart={executable} serve", f"Environment=REMEDIATOR_CONFIG={tmp_path / 'remediator.yml'}"):
        assert line in unit.read_text().splitlines()
    # the check can fail: a unit systemd would half-ignore is reported
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=sometimes"))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert "protect system value, ignoring: sometimes" in out.stdout + out.stderr


def test_init_never_leaves_the_token_readable_and_says_how_the_service_reads_it(tmp_path):
    """N14: the settings file was written at the umask's mode, then chmodded: readable by all for a moment."""
    modes = []
    real_open = os.open

    def watching(path, flags, mode=0o777, *args, **kw):
        fd = real_open(path, flags, mode, *args, **kw)
        if str(path).endswith("remediator.yml"):
            modes.append(os.fstat(fd).st_mode & 0o777)   # the mode it has the moment it exists
        return fd
    old = os.umask(0o022)
    try:
        with mock.patch("os.open", watching):
            result = runner.invoke(cli, ["init", str(tmp_path / "conf"), "--systemd"])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert modes == [0o600] and (tmp_path / "conf" / "remediator.yml").stat().st_mode & 0o777 == 0o600
    assert f"chgrp -R remediator {tmp_path / 'conf'}" in result.output and "g-w" in result.output


def test_init_systemd_keeps_state_under_var_lib(tmp_path):
    report = init_tree(tmp_path / "conf", systemd=True)
    assert yaml.safe_load(report.config.read_text())["data_dir"] == "/var/lib/remediator"
    assert report.unit is not None and f"REMEDIATOR_CONFIG={report.config}" in report.unit.read_text()


def test_help_shows_the_operator_s_commands_apart_from_the_lab_s():
    """An operator's first day: `--help` mixed lab, demo and eval with the commands that run production."""
    import re

    from remediator.engine.lab.harness import REMEDIATOR
    shown = subprocess.run([str(REMEDIATOR), "--help"], env={**os.environ, "COLUMNS": "120"}, capture_output=True,
                           text=True, timeout=60).stdout
    operate, lab = shown.split("─ Operate ")[1].split("─ Lab, demo and evaluation")
    names = {panel: set(re.findall(r"^│ ([a-z]+) ", text, re.M)) for panel, text in (("operate", operate), ("lab", lab))}
    assert {"serve", "init", "incidents", "approvals", "approvers", "plan", "audit", "pause"} <= names["operate"]
    assert names["lab"] == {"demo", "eval", "lab", "chaos", "scenarios"}


def test_config_diff_says_which_copied_files_fell_behind_the_release(tmp_path):
    """An operator's first day: copied policies and runbooks never get a release's safety fixes, and nothing said so."""
    import json

    from remediator.engine.config_tree import MANIFEST
    tree = tmp_path / "etc"
    init_tree(tree)
    env = {"REMEDIATOR_CONFIG": str(tree / "remediator.yml")}
    same = CliRunner().invoke(cli, ["config", "diff"], env=env)
    assert same.exit_code == 0 and "same     policies/default.yml" in same.output, same.output
    runbook = tree / "runbooks" / "default.yml"
    runbook.write_text(runbook.read_text() + "# ours: paged at night\n")
    yours = CliRunner().invoke(cli, ["config", "diff", "--tree", str(tree)])
    assert yours.exit_code == 0 and "yours    runbooks/default.yml" in yours.output
    # as if the tree had been copied from an older release, whose policies/default.yml differed
    noted = json.loads((tree / MANIFEST).read_text())
    noted["files"]["policies/default.yml"] = "0" * 64
    (tree / MANIFEST).write_text(json.dumps(noted))
    policy = tree / "policies" / "default.yml"
    policy.write_text(policy.read_text().replace("rules:", "rules:  # an older release's", 1))
    behind = CliRunner().invoke(cli, ["config", "diff"], env=env)
    assert behind.exit_code == 1 and "behind   policies/default.yml: the shipped one changed" in behind.output
    assert "--- yours/policies/default.yml" in behind.output and "+++ shipped/policies/default.yml" in behind.output
    merged = CliRunner().invoke(cli, ["config", "diff", "--noted"], env=env)
    assert merged.exit_code == 0
    after = CliRunner().invoke(cli, ["config", "diff"], env=env)
    assert after.exit_code == 0 and "yours    policies/default.yml" in after.output
    (tree / MANIFEST).unlink()                        # a tree from before the note
    unknown = CliRunner().invoke(cli, ["config", "diff"], env=env)
    assert unknown.exit_code == 1 and "differs  runbooks/default.yml: differs from the shipped one" in unknown.output
    nowhere = CliRunner().invoke(cli, ["config", "diff"], env={"REMEDIATOR_CONFIG": ""})
    assert nowhere.exit_code != 0 and "pass --tree DIR" in str(nowhere.exception)
