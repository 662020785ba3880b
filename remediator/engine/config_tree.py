"""What `remediator init DIR` writes: an operator-owned tree that serve uses through REMEDIATOR_CONFIG.

DIR/remediator.yml (the settings, with a fresh token), inventory.yml (the SSH example), policies/ and runbooks/
(copies of the shipped defaults, the operator's to edit), catalog/ (an empty overlay for the operator's own
entries) and, asked for, remediator.service (the systemd unit, its paths filled in).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sys
from pathlib import Path

from jinja2 import Template
from pydantic import BaseModel

from remediator.engine import SHIPPED
from remediator.engine.errors import ConfigError

__all__ = ["InitReport", "init_tree", "UNIT", "systemd_unit", "Drift", "drift", "note_shipped", "shipped_file", "MANIFEST", "COPIED"]

#: what init copies for the operator to own, and where it notes what the shipped files were when they were copied
COPIED = ("policies", "runbooks")
MANIFEST = ".shipped.json"

PACKAGING = SHIPPED / "packaging"
#: this release's docs (in the wheel too): engine.md, operating.md, ...
DOCS = SHIPPED / "docs"
UNIT = PACKAGING / "systemd" / "remediator.service"
_DEFAULT_CONFIG = "/etc/remediator/remediator.yml"
_DEFAULT_EXEC = "/opt/remediator/bin/remediator"
_OVERLAY_README = """\
Your own catalog entries, beside the ones remediator ships, in the same layout (docs/engine.md, "The catalog"):
  roles/<id>/meta/argument_specs.yml, roles/<id>/meta/remediator.yml, roles/<id>/tasks/main.yml, and <id>.yml.
They are validated like the shipped ones at start; an id the catalog already has is refused.
"""


class InitReport(BaseModel):
    config: Path
    token: str
    written: list[Path]
    unit: Path | None = None


def systemd_unit(config: Path, executable: Path | None = None) -> str:
    """The shipped unit with this settings file and this installation's `remediator` in it."""
    exe = executable or Path(sys.executable).parent / "remediator"
    return UNIT.read_text().replace(_DEFAULT_CONFIG, str(config)).replace(_DEFAULT_EXEC, str(exe))


def init_tree(target: Path, *, systemd: bool = False) -> InitReport:
    """Write the tree into `target` (created, or empty); never over an existing one."""
    target = target.resolve()
    config = target / "remediator.yml"
    if config.exists():
        raise ConfigError(f"{config} exists: this directory is set up already (edit it, or init another one)")
    if target.is_dir() and any(target.iterdir()):
        raise ConfigError(f"{target} is not empty: init writes into a new or empty directory")
    target.mkdir(parents=True, exist_ok=True, mode=0o750)
    # named: deliveries and the audit say "alertmanager" posted, not "service-1" (the name is part of the bearer)
    token = f"alertmanager:{secrets.token_urlsafe(32)}"
    data_dir = "/var/lib/remediator" if systemd else "var"
    text = Template((PACKAGING / "remediator.yml.j2").read_text(), keep_trailing_newline=True).render(
        data_dir=data_dir, token=token, docs=DOCS)
    # it holds the token: made 0600 in the one call that creates it, never readable for a moment in between
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    shutil.copy(SHIPPED / "inventory" / "example-ssh.yml", target / "inventory.yml")
    for name in COPIED:
        shutil.copytree(SHIPPED / name, target / name)
    # Copies never get a later release's fixes by themselves: what they were copied from is noted, so that
    # `remediator config diff` (and serve, at start) can say which shipped files changed since.
    note_shipped(target)
    (target / "catalog" / "roles").mkdir(parents=True)
    (target / "catalog" / "README").write_text(_OVERLAY_README)
    written = [config, target / "inventory.yml", target / "policies", target / "runbooks", target / "catalog"]
    unit = None
    if systemd:
        unit = target / "remediator.service"
        unit.write_text(systemd_unit(config))
        written.append(unit)
    return InitReport(config=config, token=token, written=written, unit=unit)


def _shipped_hashes() -> dict[str, str]:
    return {str(p.relative_to(SHIPPED)): _sha(p) for name in COPIED for p in sorted((SHIPPED / name).rglob("*.yml"))}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Drift(BaseModel):
    """One file the operator's tree has (or lacks) beside the shipped one."""

    path: str                       # policies/default.yml
    state: str                      # same | yours | behind | new | differs
    says: str


def drift(tree: Path) -> list[Drift]:
    """Each shipped policy and runbook file against the operator's copy in `tree`: the same, edited by them (the
    shipped one unchanged since the copy), **behind** (the shipped one changed since: a fix they do not have), new in
    this release, or different with no note of what was copied (a tree from before the note)."""
    noted_file = tree / MANIFEST
    noted: dict[str, str] | None = json.loads(noted_file.read_text())["files"] if noted_file.is_file() else None
    out = []
    for rel, shipped_sha in _shipped_hashes().items():
        mine = tree / rel
        if not mine.is_file():
            out.append(Drift(path=rel, state="new", says="shipped by this release, not in your tree (copy it to use it)"))
        elif _sha(mine) == shipped_sha:
            out.append(Drift(path=rel, state="same", says="the same as shipped"))
        elif noted is None or rel not in noted:
            out.append(Drift(path=rel, state="differs", says="differs from the shipped one (no note of what was "
                             "copied: compare them, then note the tree with `remediator config diff --noted`)"))
        elif noted[rel] == shipped_sha:
            out.append(Drift(path=rel, state="yours", says="your edits; the shipped one has not changed since you copied it"))
        else:
            out.append(Drift(path=rel, state="behind", says="the shipped one changed since you copied it: merge "
                             "what this release fixed (the diff below), then `remediator config diff --noted`"))
    return out


def note_shipped(tree: Path) -> None:
    """Note the shipped files as they are now: the operator has merged what changed."""
    (tree / MANIFEST).write_text(json.dumps({"files": _shipped_hashes()}, indent=2, sort_keys=True) + "\n")


def shipped_file(rel: str) -> Path:
    return SHIPPED / rel
