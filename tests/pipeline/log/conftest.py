"""Fixtures of the event log tests: a librdkafka mock Kafka cluster (session-scoped,
started only by tests that ask for ``kafka_bootstrap``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kafka_mock import MockKafkaCluster, MockKafkaError


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a one-broker mock Kafka cluster; skips if it cannot start."""
    try:
        cluster = MockKafkaCluster().start()
    except MockKafkaError as exc:
        pytest.skip(f"mock Kafka cluster unavailable: {exc}")
    try:
        yield cluster.bootstrap
    finally:
        cluster.stop()
