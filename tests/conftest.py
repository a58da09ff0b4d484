"""Shared fixtures.

chDB runs one embedded server per process, bound to the first data directory opened
(a second path fails until every session on the first is closed), so the whole test
session shares one chDB directory: use ``chdb_store`` (shared) or ``store`` (the same,
with every projection dropped and re-created first).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from projections.migrations import drop_projections, migrate
from projections.store.chdb import ChdbStore
from tests.kafka_mock import MockKafkaCluster, MockKafkaError


@pytest.fixture(scope="session")
def chdb_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    store = ChdbStore(tmp_path_factory.mktemp("chdb"))
    migrate(store)
    yield store
    store.close()


@pytest.fixture
def store(chdb_store: ChdbStore) -> ChdbStore:
    """The shared chDB store with empty projections."""
    drop_projections(chdb_store)
    migrate(chdb_store)
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
