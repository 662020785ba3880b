import re

import pytest
import yaml

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import EntryKind, load_catalog, markdown_table
from remediator.engine.errors import ConfigError, ProposalError

pytestmark = pytest.mark.unit

# Commands a remediation may run in check mode too: they only read (and say so with changed_when: false).
READ_ONLY_COMMANDS = {"realpath"}


def _reads_only(task: dict) -> bool:
    argv = str((task.get("ansible.builtin.command") or {}).get("argv", ""))
    tool = re.match(r"\{\{ \['([a-z]+)'", argv)
    return task.get("changed_when") is False and tool is not None and tool.group(1) in READ_ONLY_COMMANDS


def test_no_shell_and_no_check_mode_escape_in_remediations(catalog):
    for entry in catalog:
        for tasks_file in (catalog.root / "roles" / entry.id).rglob("tasks/*.yml"):
            for task in yaml.safe_load(tasks_file.read_text()):
                modules = set(task) - {"name", "vars", "register", "loop", "loop_control", "when", "until",
                                       "retries", "delay", "changed_when", "failed_when", "check_mode", "timeout"}
                assert not modules & {"ansible.builtin.shell", "shell", "ansible.builtin.raw", "raw"}, tasks_file
                if entry.meta.kind == EntryKind.REMEDIATION:
                    assert task.get("check_mode") is not False or _reads_only(task), \
                        f"{tasks_file}: {task['name']} changes hosts in check mode"


def test_every_playbook_needs_target_hosts(catalog):
    for entry in catalog:
        play = yaml.safe_load(entry.playbook.read_text())[0]
        assert play["hosts"] == "{{ target_hosts | default([]) }}"


def test_validate_params_fills_defaults_and_types(catalog):
    assert catalog.get("scale_out").validate_params({"service": "worker"}) == {"service": "worker", "count": 1}
    assert catalog.get("clean_logs").validate_params({"paths": ["/var/log/webapp"]})["min_age_days"] == 7


@pytest.mark.parametrize("entry,params,problem", [
    ("scale_out", {"service": "worker", "count": 5}, "count"),
    ("scale_out", {"service": "worker", "replicas": 2}, "replicas: Extra inputs are not permitted"),
    ("clean_logs", {"paths": "/var/log/webapp"}, "paths"),
    ("clean_logs", {"paths": ["/var/log"], "min_age_days": "a week"}, "min_age_days"),
    ("restart_service", {"unit": "webapp"}, "reason: Field required"),
    ("restart_service", {"unit": "x" * 600, "reason": "r"}, "unit"),
    ("clean_logs", {"paths": ["/var/log/webapp"] * 9}, "paths: List should have at most 8 items"),
])
def test_validate_params_refuses_with_the_field_named(catalog, entry, params, problem):
    with pytest.raises(ProposalError, match=re.escape(problem)):
        catalog.get(entry).validate_params(params)


def test_unknown_entry_is_refused(catalog):
    with pytest.raises(ProposalError, match="unknown catalog entry 'delete_database'"):
        catalog.get("delete_database")


def test_extravars_are_prefixed_and_unsafe(catalog):
    entry = catalog.get("clean_logs")
    ev = entry.extravars(entry.validate_params({"paths": ["{{ lookup('pipe','id') }}"]}), ["app-server-01"])
    assert ev["clean_logs_paths"] == [{"__ansible_unsafe": "{{ lookup('pipe','id') }}"}]
    assert ev["clean_logs_min_age_days"] == 7
    assert ev["target_hosts"] == {"__ansible_unsafe": "app-server-01"}


def test_json_schema_forbids_undeclared_parameters(catalog):
    schema = catalog.get("scale_out").json_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["count"]["enum"] == [1, 2]
    assert schema["required"] == ["service"]


def test_readme_catalog_table_matches_the_files(catalog):
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert markdown_table(catalog) in readme, "README's catalog table is stale: remediator catalog list --markdown"


@pytest.mark.parametrize("path,change,message", [
    ("roles/scale_out/meta/argument_specs.yml", ("scale_out_count:", "count:"), "must be named scale_out_<parameter>"),
    ("roles/scale_out/meta/remediator.yml", ("risk: safe", "risk: yolo"), "remediator.yml: risk"),
    ("roles/scale_out/meta/remediator.yml", ("read_only: false", "read_only: false\nshell: true"), "shell: Extra inputs"),
    ("roles/scale_out/defaults/main.yml", ("scale_out_count: 1", ""), "optional scale_out_count has no default"),
    ("roles/clean_logs/meta/remediator.yml", ("entry: disk_usage", "entry: restart_service"), "is not a diagnostic"),
])
def test_a_broken_entry_fails_closed_naming_file_and_key(catalog_copy, path, change, message):
    f = catalog_copy / path
    f.write_text(f.read_text().replace(*change, 1))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_catalog(catalog_copy)


def test_a_playbook_that_does_not_mark_its_processes_fails_closed(catalog_copy):
    f = catalog_copy / "restart_service.yml"
    f.write_text("\n".join(line for line in f.read_text().splitlines() if "REMEDIATOR_RUN" not in line))
    with pytest.raises(ConfigError, match=r"restart_service.yml: play 'Restart one systemd unit' does not set "
                                          r"environment REMEDIATOR_RUN"):
        load_catalog(catalog_copy)


def test_a_role_without_its_playbook_fails_closed(catalog_copy):
    (catalog_copy / "resources.yml").unlink()
    with pytest.raises(ConfigError, match="resources.yml: missing"):
        load_catalog(catalog_copy)


def test_drills_load_and_name_known_entries(catalog):
    from remediator.engine.lab.drills import drills_of
    names = [name for name, _, _ in drills_of(catalog)]
    assert len(names) == len(set(names))
    assert {"db-corruption", "api-service-down"} <= set(names)


def _module_names(node) -> set[str]:
    """Every key shaped like a module's FQCN (namespace.collection.module) in a parsed playbook."""
    if isinstance(node, list):
        return set().union(*map(_module_names, node)) if node else set()
    if isinstance(node, dict):
        found = {k for k in node if isinstance(k, str) and re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+", k)}
        return found.union(*map(_module_names, node.values()))
    return set()


def test_the_catalog_needs_no_collection_beyond_ansible_core():
    """The package depends on ansible-core alone (pyproject.toml): a module from any other collection would be
    missing on an operator's machine."""
    used = set().union(*(_module_names(yaml.safe_load(p.read_text())) for p in (PROJECT_ROOT / "playbooks").rglob("*.yml")))
    assert used and {m for m in used if not m.startswith("ansible.builtin.")} == set()


def test_catalog_list_never_cuts_an_entry_id_on_a_narrow_terminal(catalog):
    """An operator's first day: at 80 columns and less, `catalog list` showed `nginx_up…` twice."""
    import os
    import subprocess

    from remediator.engine.lab.harness import REMEDIATOR
    for columns in ("60", "80"):
        shown = subprocess.run([str(REMEDIATOR), "catalog", "list"], env={**os.environ, "COLUMNS": columns},
                               capture_output=True, text=True, timeout=60).stdout
        first = {line.split("│")[1].strip() for line in shown.splitlines() if line.startswith("│ ") and line[2] != " "}
        assert {e.id for e in catalog} <= first, (columns, first)
