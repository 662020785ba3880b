"""Alembic migrations of the store. `upgrade(engine)` runs them programmatically; `revisions(engine)` says where a
database stands."""
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

HERE = Path(__file__).resolve().parent
MIGRATE_LOCK = 7_261_001   # the advisory lock migrations take (remediator/engine/store/leader.py has the others)


def config(engine=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine) -> None:
    """To head. On PostgreSQL under an advisory lock: replicas that start together migrate one after the other (the
    later ones find nothing to do)."""
    if engine.dialect.name != "postgresql":
        command.upgrade(config(engine), "head")
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATE_LOCK})
        try:
            command.upgrade(config(engine), "head")
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATE_LOCK})


def revisions(engine) -> tuple[str | None, str]:
    """(the database's revision, None for an empty one; the newest this remediator knows)."""
    head = ScriptDirectory.from_config(config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision(), str(head)
