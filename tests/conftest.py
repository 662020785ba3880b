import os
import shutil
from pathlib import Path

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import Catalog, load_catalog
from remediator.engine.settings import Settings
from tests.engines import new_engine

FIXTURES = Path(__file__).parent / "fixtures"
# pytest-xdist's workers start with COLUMNS=80 set, and a Rich console made while it is set keeps that width for good,
# whatever a test's CLI invocation asks for: the CLI's console must size itself per invocation, as in a shell.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(PROJECT_ROOT / "playbooks")


@pytest.fixture
def catalog_copy(tmp_path) -> Path:
    """A private copy of the real catalog, for tests that break it on purpose."""
    dest = tmp_path / "playbooks"
    shutil.copytree(PROJECT_ROOT / "playbooks", dest)
    return dest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `store` that takes `database_url` runs twice: on SQLite and on PostgreSQL."""
    if "database_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("store"):
        metafunc.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None (SQLite in the test's data dir), or, for the `postgres` run of a `store` test, a fresh PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "postgres":
        return request.getfixturevalue("postgres_cluster").new_database()
    return None


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster (tests/postgres.py), one per test process."""
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


@pytest.fixture(scope="session")
def lab():
    """This test process's lab instance (tests/lab.py); every container of it is removed at the session's end."""
    from tests.lab import Lab
    lab = Lab()
    yield lab
    lab.down()


#: The lanes of `--dist loadgroup` (tests/run.sh): each runs on one xdist worker, in order. A lab lane's modules share
#: that worker's lab instance (tests/lab.py); the model lane shares one llama.cpp server. A test file not named here
#: is no lane: its tests go one by one to whichever worker is free. Balanced by the durations CI prints.
LANES = {
    "lab-a": ["tests/chaos/test_replicas.py", "tests/chaos/test_kill.py", "tests/chaos/test_storm.py", "tests/chaos/test_regions.py",
              "tests/chaos/test_scenarios.py"],
    "lab-b": ["tests/chaos/test_drills.py", "tests/e2e/", "tests/integration/",
              "tests/security/test_clean_logs.py", "tests/security/test_host_keys.py"],
    "model": ["tests/security/test_real_model.py"],
}


def lane_of(nodeid: str) -> str | None:
    """The lane a test runs in, by its file (None: any free worker)."""
    path = nodeid.split("::", 1)[0]
    return next((lane for lane, prefixes in LANES.items() for p in prefixes if path.startswith(p)), None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup` by LANES: xdist's own loadgroup renames test ids from `xdist_group` marks, which pytest 9's
    node ids no longer allow, so the lanes are read from the ids here instead."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return lane_of(nodeid) or nodeid

    return Lanes(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_CPU_AT_START] = _cpu_s()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """Each test's CPU seconds, its process's and its reaped children's (ansible-playbook, serve, podman's CLI; not
    the containers'), as the junit property `cpu_s`: on two cores the suite's length is its CPU (tests/run.sh)."""
    try:
        return (yield)
    finally:
        if _CPU_AT_START in item.stash:
            item.user_properties.append(("cpu_s", f"{_cpu_s() - item.stash[_CPU_AT_START]:.1f}"))


_CPU_AT_START = pytest.StashKey[float]()


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@pytest.fixture(scope="module")
def lab_host(lab) -> str:
    """app-server-01 of this process's lab (tests/lab.py), running."""
    return lab.use(["app-server-01"])[0]


@pytest.fixture
def executor(tmp_path):
    """An AnsibleExecutor over this process's lab inventory."""
    from remediator.engine.run.runner import AnsibleExecutor
    from tests.lab import INVENTORY
    executor = AnsibleExecutor(tmp_path / "runs", INVENTORY)
    yield executor
    executor.close()


@pytest.fixture
def make_engine(tmp_path, database_url):
    """make_engine(**settings, executor=, clock=, query=) -> an Engine (not started) in tmp_path, on SQLite or, in a
    `store` test's postgres run, on PostgreSQL; built as tests/engines.py builds every test's engine."""
    def make(**overrides):
        executor, clock, query = (overrides.pop(k, None) for k in ("executor", "clock", "query"))
        overrides.setdefault("data_dir", tmp_path)
        overrides.setdefault("database_url", database_url)
        return new_engine(Settings(**overrides), executor=executor, clock=clock, query=query)
    return make
