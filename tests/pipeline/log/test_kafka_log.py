"""KafkaEventLog against librdkafka's mock cluster (tests/kafka_mock.py).

Every test uses its own topic prefix, so the session's one cluster never leaks data
between tests.  The mock auto-creates topics with 4 partitions.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from millrace.pipeline.codec import default_codec
from millrace.pipeline.errors import LogError
from millrace.pipeline.log.base import EventLog, Message, TopicPartition
from millrace.pipeline.log.kafka import KafkaEventLog, KafkaLogConfig
from millrace.pipeline.log.kafka.admin import ensure_topics
from millrace.pipeline.telemetry_columns import COLUMN_FIELDS
from millrace.schemas import SCHEMA_DIR
from tests.pipeline.log.contract import EventLogContract

with warnings.catch_warnings():
    # kafka-python 3.0 calls importlib.resources.read_text/open_text (deprecated in 3.11) while
    # importing its protocol schemas; nothing we can change, and it fires only at import.
    warnings.filterwarnings("ignore", r"(read|open)_text is deprecated", DeprecationWarning)
    import kafka
    import kafka.errors
    from kafka.partitioner.default import murmur2

pytestmark = pytest.mark.integration

CONTRACT_TOPICS = ("t", "a", "b")


def kafka_partition(key: bytes, partitions: int) -> int:
    """Where Kafka's default partitioner (kafka-python's ``DefaultPartitioner``) puts ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def make_config(bootstrap: str, prefix: str | None = None, **kwargs: Any) -> KafkaLogConfig:
    prefix = f"test-{uuid.uuid4().hex[:12]}." if prefix is None else prefix
    return KafkaLogConfig(
        bootstrap_servers=bootstrap, topic_prefix=prefix, request_timeout_ms=10_000, **kwargs
    )


class TestKafkaEventLog(EventLogContract):
    bootstrap = ""

    def make_log(self, tmp_path: Path) -> EventLog:
        return KafkaEventLog(make_config(self.bootstrap))

    @pytest.fixture
    async def log(self, tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[EventLog]:
        # Overrides the contract's fixture: the Kafka log must be started (it connects
        # and loads partition counts there, the constructor does no I/O).
        self.bootstrap = kafka_bootstrap
        log = self.make_log(tmp_path)
        assert isinstance(log, KafkaEventLog)
        await log.start(CONTRACT_TOPICS)
        yield log
        await log.close()

    async def test_read_returns_what_was_appended_in_order(self, log: EventLog) -> None:
        # Overridden: Kafka record timestamps are milliseconds, so the contract's
        # 1000 + i microseconds cannot round-trip; whole milliseconds do.
        values = [f"v{i}".encode() for i in range(50)]
        for start in range(0, 50, 10):
            chunk = enumerate(values[start : start + 10], start)
            batch = [
                Message(v, key=b"k", partition=1, timestamp_us=(1000 + i) * 1000) for i, v in chunk
            ]
            await log.append("t", batch)
        records = await log.read("t", 1, 0)
        assert [r.value for r in records] == values
        assert [r.offset for r in records] == list(range(50))
        assert [r.timestamp_us for r in records] == [(1000 + i) * 1000 for i in range(50)]
        assert {(r.topic, r.partition, r.key) for r in records} == {("t", 1, b"k")}

    async def test_a_key_always_lands_on_the_same_partition(self, log: EventLog) -> None:
        # Overridden: Kafka places keys with murmur2 (Java client, kafka-python, faust),
        # not with pipeline.log.base.partition_for (CRC-32); stability is what matters.
        n = log.partitions("t")
        assert n >= 2
        keys = [f"device-{i}".encode() for i in range(20)]
        results = await log.append("t", [Message(b"x", key=k) for k in keys])
        results += await log.append("t", [Message(b"y", key=k) for k in keys])
        for key, first, second in zip(keys, results[:20], results[20:], strict=True):
            assert first.partition == second.partition == kafka_partition(key, n)

    # -- Kafka specifics -------------------------------------------------------------

    async def test_keys_land_where_kafka_python_would_put_them(self, log: EventLog) -> None:
        n = log.partitions("t")
        keys = [b"", b"plant/line1/press4", "\u00e9t\u00e9".encode(), bytes(range(256))]
        results = await log.append("t", [Message(b"x", key=k) for k in keys])
        assert [r.partition for r in results] == [kafka_partition(k, n) for k in keys]
        for key, result in zip(keys, results, strict=True):
            [record] = await log.read("t", result.partition, result.offset, max_records=1)
            assert record.key == key

    async def test_the_producer_is_idempotent(self, log: EventLog) -> None:
        assert isinstance(log, KafkaEventLog)
        assert log.config.enable_idempotence
        await log.append("t", [Message(b"x", partition=0)])
        assert log.producer_id is not None and log.producer_id >= 0

    async def test_idempotence_can_be_disabled(self, kafka_bootstrap: str) -> None:
        log = KafkaEventLog(make_config(kafka_bootstrap, enable_idempotence=False, acks=1))
        await log.start(["t"])
        try:
            [result] = await log.append("t", [Message(b"x", partition=0)])
            assert (result.offset, log.producer_id) == (0, None)
        finally:
            await log.close()

    async def test_committed_offsets_survive_a_new_instance(self, kafka_bootstrap: str) -> None:
        config = make_config(kafka_bootstrap)
        group = f"g-{uuid.uuid4().hex[:8]}"
        tp = TopicPartition("t", 2)
        first = KafkaEventLog(config)
        await first.start(["t"])
        await first.commit(group, {tp: 42})
        await first.close()
        second = KafkaEventLog(config)
        await second.start(["t"])
        try:
            assert await second.committed(group, tp) == 42
            assert await second.committed(group, TopicPartition("t", 3)) is None
        finally:
            await second.close()

    async def test_confluent_wire_format_round_trips(self, log: EventLog) -> None:
        codec = default_codec()
        event = {
            "identity": "plant/line1/press4",
            "source": "opcua:plc1",
            "received_us": 1_700_000_000_000_000,
            "samples": [{"ts_us": 1_700_000_000_000_001, "values": {"t": 1.5}, "quality": 0}],
            "ip": None,
            "batch_id": "b-7",
            **{name: [] for name in COLUMN_FIELDS},  # a row-wise batch (v4 and before)
        }
        data = codec.encode_confluent("telemetry", event, 7)
        assert data[:5] == b"\x00\x00\x00\x00\x07"
        assert isinstance(log, KafkaEventLog)
        await log.load_topics(["telemetry"])
        [result] = await log.append("telemetry", [Message(data, key=b"plant/line1/press4")])
        [record] = await log.read("telemetry", result.partition, result.offset)
        assert record.value == data
        schema = (SCHEMA_DIR / "telemetry.avsc").read_text()
        assert codec.decode("telemetry", record.value, schema_lookup={7: schema}.__getitem__) == (
            event
        )

    async def test_topic_prefix_is_applied_on_the_wire(self, log: EventLog) -> None:
        assert isinstance(log, KafkaEventLog)
        await log.append("t", [Message(b"x", partition=0)])
        other = KafkaEventLog(make_config(log.config.bootstrap_servers, prefix=""))  # type: ignore[arg-type]
        await other.start([log.config.topic("t")])
        try:
            [record] = await other.read(log.config.topic("t"), 0, 0)
            assert record.value == b"x"
        finally:
            await other.close()

    async def test_unknown_topic_partitions_is_an_error(self, log: EventLog) -> None:
        with pytest.raises(LogError, match="not loaded"):
            log.partitions("never-loaded")


async def test_use_before_start_is_an_error() -> None:
    log = KafkaEventLog(KafkaLogConfig(bootstrap_servers="127.0.0.1:1"))
    with pytest.raises(LogError, match="not started"):
        await log.append("t", [Message(b"x")])
    await log.close()
    await log.close()  # idempotent


async def test_unreachable_cluster_is_a_log_error() -> None:
    log = KafkaEventLog(KafkaLogConfig(bootstrap_servers="127.0.0.1:1", request_timeout_ms=1000))
    with pytest.raises(LogError, match="connect"):
        await log.start([])


class FakeAdmin:
    """kafka-python's KafkaAdminClient, faked: the mock cluster has no CreateTopics and
    kafka-python 3.0 cannot bootstrap from it, and a real failed bootstrap leaks sockets."""

    existing = ["old"]
    racing = ["raced"]  # created by someone else between list_topics and create_topics
    created: list[str] = []
    closed = False

    def __init__(self, **config: Any) -> None:
        if config["bootstrap_servers"] == "down:9092":
            raise kafka.errors.KafkaTimeoutError()

    def list_topics(self) -> list[str]:
        return self.existing

    def create_topics(self, topics: dict[str, dict[str, int]]) -> None:
        [(name, options)] = topics.items()
        assert options == {"num_partitions": 3, "replication_factor": 2}
        if name in self.racing:
            raise kafka.errors.TopicAlreadyExistsError()
        if name == "bad":
            raise kafka.errors.PolicyViolationError()
        type(self).created.append(name)

    def close(self) -> None:
        type(self).closed = True


def test_ensure_topics_creates_only_missing_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "KafkaAdminClient", FakeAdmin)
    monkeypatch.setattr(FakeAdmin, "created", [])
    created = ensure_topics("k:9092", ["old", "new", "raced", "new"], 3, 2)
    assert created == FakeAdmin.created == ["new"]
    assert FakeAdmin.closed


def test_ensure_topics_maps_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "KafkaAdminClient", FakeAdmin)
    with pytest.raises(LogError, match="cannot reach") as caught:
        ensure_topics("down:9092", ["t"], 3, 2)
    assert isinstance(caught.value.__cause__, kafka.errors.KafkaTimeoutError)
    with pytest.raises(LogError, match="creating topics"):
        ensure_topics("k:9092", ["bad"], 3, 2)


def test_config_checks_and_hides_secrets() -> None:
    with pytest.raises(ValidationError, match="requires acks='all'"):
        KafkaLogConfig(bootstrap_servers="k:9092", acks=1)
    with pytest.raises(ValidationError, match="extra"):
        KafkaLogConfig(bootstrap_servers="k:9092", linger_ms=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="sasl_username"):
        KafkaLogConfig(bootstrap_servers="k:9092", security_protocol="SASL_SSL")
    config = KafkaLogConfig(
        bootstrap_servers="k:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_username="u",
        sasl_password=SecretStr("hunter2"),
    )
    assert "hunter2" not in repr(config)
    assert config.client_kwargs()["sasl_plain_password"] == "hunter2"
