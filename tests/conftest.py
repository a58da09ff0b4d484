"""Shared fixtures.

chDB runs one embedded server per process, bound to the first data directory opened
(a second path fails until every session on the first is closed), so the whole test
session shares one chDB directory: use ``chdb_store`` (shared) or ``store`` (the same,
with every projection emptied first, as a drop and migrate would leave it).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from millrace.projections.migrations import migrate
from millrace.projections.store.chdb import ChdbStore
from tests import fastapi_routes
from tests.kafka_mock import MockKafkaCluster, MockKafkaError
from tests.projection_reset import empty_projections

if TYPE_CHECKING:
    from tests.test_crash_recovery import Engine

#: free space a tmpfs needs to hold the session's temporary files
RAM_TEMP_MIN_BYTES = 4 << 30

# No timed assertions: hypothesis's default 200 ms deadline per example fails tests by
# chance on a loaded machine (a 20 ms example took 418 ms beside other suites' runs).
settings.register_profile("millrace", deadline=None)
settings.load_profile("millrace")


def pytest_configure(config: pytest.Config) -> None:
    """Temporary files (``tmp_path``, ``tempfile``, the ``millrace`` processes the tests
    start) go to a roomy tmpfs, ``/dev/shm``, unless ``TMPDIR`` names a place. The local
    log and the connector spool fsync every append, which on a shared machine's disk
    took a third to half of the integration tests' time; what the tests check is the
    same on tmpfs (a crash test kills a process, not the machine).

    FastAPI's route building is memoized for the session (``tests/fastapi_routes.py``):
    the tests build an app per test, and each paid it anew.

    The engines the tests start load the web console on its first request, not in the
    background after their start (``api.console_preload``, ~0.5 s of CPU each, and most
    never serve a page); tests/console/test_lazy_mount.py covers the preload."""
    fastapi_routes.install()
    os.environ.setdefault("MILLRACE_CONSOLE_PRELOAD", "false")
    if os.environ.get("TMPDIR"):
        return
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return
    if st.f_bavail * st.f_frsize >= RAM_TEMP_MIN_BYTES and os.access("/dev/shm", os.W_OK):
        os.environ["TMPDIR"] = tempfile.tempdir = "/dev/shm"


#: the files that take longest (``--durations`` of a quiet run), longest first. Under
#: pytest-xdist's ``--dist loadfile`` a worker takes the next file when it is done with
#: one, in collection order when ``--no-loadscope-reorder`` is given (``make test``
#: gives it; by default xdist orders files by their number of tests, which put these
#: one-test files last: a worker then ran the two-minute two-workers test alone at the
#: end). Longest first leaves short files for the end, where they fill both workers.
SLOW_FIRST = (
    "tests/runtime/test_two_workers.py",
    "tests/test_fuzz_openapi_stateful.py",
    "tests/test_fuzz_openapi.py",
    "tests/test_distributed_e2e.py",
    "tests/test_distributed_ops.py",
    "tests/test_crash_recovery.py",
    "tests/test_services_e2e.py",
    "tests/test_restore_crash.py",
    "tests/runtime/test_faust_runtime.py",
    "tests/test_distributed_restore.py",
    "tests/test_distributed_replay.py",
    "tests/test_archive_distributed.py",
    "tests/test_distributed_pause.py",
    "tests/test_config_follow_e2e.py",
    "tests/projections/test_exactly_once.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files in the order of :data:`SLOW_FIRST`, then the integration files (they start
    processes and wait on them), then the others by their number of tests, most first;
    a file's tests keep their order."""
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    count: dict[str, int] = {}
    integration: set[str] = set()
    for item in items:
        path = item.nodeid.split("::")[0]
        count[path] = count.get(path, 0) + 1
        if item.get_closest_marker("integration") is not None:
            integration.add(path)

    def key(item: pytest.Item) -> tuple[int, bool, int, str]:
        path = item.nodeid.split("::")[0]
        return rank.get(path, len(rank)), path not in integration, -count[path], path

    items.sort(key=key)  # stable: a file's tests keep their order


@pytest.fixture(scope="session")
def chdb_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    store = ChdbStore(tmp_path_factory.mktemp("chdb"))
    migrate(store)
    yield store
    store.close()


@pytest.fixture
def store(chdb_store: ChdbStore) -> ChdbStore:
    """The shared chDB store with empty projections (see tests/projection_reset.py)."""
    empty_projections(chdb_store)
    return chdb_store


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a one-broker librdkafka mock cluster (started by the tests that
    ask for it); skips with the reason if it cannot start."""
    try:
        cluster = MockKafkaCluster().start()
    except MockKafkaError as exc:
        pytest.skip(f"mock Kafka cluster unavailable: {exc}")
    try:
        yield cluster.bootstrap
    finally:
        cluster.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_module_under_its_folder_name() -> Iterator[None]:
    """The repository root is on sys.path here, so ``import pipeline`` would work and load
    a second copy of every module (its classes unequal to millrace.pipeline's): checked
    when the session's tests are done, as an error of the last one (a fixture, not a
    ``pytest_sessionfinish`` hook, so that it fails the run under pytest-xdist too)."""
    yield
    import sys as _sys

    folders = ("pipeline", "connectors", "projections", "api", "schemas")  # not modules
    stray = sorted(n for n in _sys.modules if n.split(".")[0] in folders)
    if stray:
        pytest.fail(f"imported under their folder names, not millrace.<folder>: {stray[:20]}")


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    """``millrace run`` processes a test started (``tests.test_crash_recovery.Engine``,
    appended by the test); a failing test never leaves one running."""
    started: list[Engine] = []
    yield started
    for engine in started:
        engine.ensure_stopped()
