"""Fixtures of the runtime tests: a librdkafka mock Kafka cluster for this package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kafka_mock import MockKafkaCluster, MockKafkaError


@pytest.fixture(scope="module")
def mock_kafka() -> Iterator[str]:
    """``host:port`` of a one-broker mock Kafka cluster; skips if it cannot start."""
    try:
        cluster = MockKafkaCluster().start()
    except MockKafkaError as exc:
        pytest.skip(f"mock Kafka cluster unavailable: {exc}")
    try:
        yield cluster.bootstrap
    finally:
        cluster.stop()
