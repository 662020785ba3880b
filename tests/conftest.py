import shutil
from pathlib import Path

import pytest

from engine import PROJECT_ROOT
from engine.catalog import Catalog, load_catalog

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(PROJECT_ROOT / "playbooks")


@pytest.fixture
def catalog_copy(tmp_path) -> Path:
    """A private copy of the real catalog, for tests that break it on purpose."""
    dest = tmp_path / "playbooks"
    shutil.copytree(PROJECT_ROOT / "playbooks", dest)
    return dest
