"""Finding 17 (files): the SQLite store was world-readable. A new data dir is the owner's alone (0700), and the
store's files are 0600, its WAL included."""
import stat

import pytest
from sqlalchemy import text

from remediator.engine.store.db import Store

pytestmark = [pytest.mark.security, pytest.mark.unit]


def test_a_new_store_is_readable_by_its_owner_only(tmp_path):
    data = tmp_path / "var" / "remediator"
    store = Store(f"sqlite:///{data / 'remediator.db'}")
    store.migrate()
    with store.write() as session:
        session.execute(text("CREATE TABLE probe (x INTEGER)"))   # any write, so the WAL exists
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("remediator.db", "remediator.db-wal"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
