import os
import shutil
from pathlib import Path

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import Catalog, load_catalog

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


@pytest.fixture(scope="session")
def _postgres():
    """The PostgreSQL cluster, when REMEDIATOR_TEST_DATABASE=postgres (tests/run.sh runs the store tests so)."""
    if os.environ.get("REMEDIATOR_TEST_DATABASE") != "postgres":
        yield None
        return
    from tests.postgres import Cluster
    cluster = Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def database_url(_postgres) -> str | None:
    """None (SQLite in the test's data dir), or a fresh PostgreSQL database."""
    return _postgres.new_database() if _postgres else None


@pytest.fixture(scope="session")
def postgres_cluster(_postgres):
    """A PostgreSQL cluster whatever REMEDIATOR_TEST_DATABASE says: replicas only share PostgreSQL."""
    if _postgres is not None:
        yield _postgres
        return
    from tests.postgres import Cluster
    cluster = Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster) -> str:
    """A fresh database in that cluster."""
    return postgres_cluster.new_database()


@pytest.fixture(scope="session")
def local_model(tmp_path_factory):
    """A real small model (llama.cpp's server, SmolLM2-135M) on loopback: tests/local_model.py."""
    from tests.local_model import LocalModel
    model = LocalModel(tmp_path_factory.mktemp("local-model") / "server.log")
    yield model
    model.stop()
