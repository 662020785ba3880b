"""Alembic migrations of the store. `upgrade(engine)` runs them programmatically."""
from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def config(engine=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine) -> None:
    command.upgrade(config(engine), "head")
