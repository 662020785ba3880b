"""Alembic migrations of the store. `upgrade(engine)` runs them programmatically; `revisions(engine)` says where a
database stands."""
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).resolve().parent


def config(engine=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine) -> None:
    command.upgrade(config(engine), "head")


def revisions(engine) -> tuple[str | None, str]:
    """(the database's revision, None for an empty one; the newest this remediator knows)."""
    head = ScriptDirectory.from_config(config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision(), str(head)
