"""Connector data that breaks a resource definition goes to ``deadletter`` with the
reason, in both deployments: ``millrace run`` (the local log) and the ``connect`` role
(Kafka, the mock cluster). The publisher under test is the one the connect stages hand
the connector manager (``pipeline.cli.assembly.connect.connector_publisher``), reading
the definitions from the store (chDB) and writing to the deployment's log."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from millrace.connectors.definitions import DefinitionCheckingPublisher
from millrace.pipeline.cli.assembly import Adapters, Assembly, Purpose
from millrace.pipeline.cli.assembly.connect import connector_publisher
from millrace.pipeline.cli.config import MillraceConfig
from millrace.pipeline.events import sample, telemetry_batch
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.log.kafka import KafkaEventLog, KafkaLogConfig
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.telemetry_columns import samples_of
from millrace.pipeline.topics import DEADLETTER, TELEMETRY
from millrace.projections.store.base import ProjectionStore
from millrace.projections.store.chdb import ChdbStore

DEFINITIONS = """INSERT INTO millrace.resource_defs
    (name, version, present, definition, updated_us, updated_by) VALUES
    ('valve', 1, 1, '{"format": "string", "allowed": ["open", "closed"]}', 10, 'admin'),
    ('temp', 1, 1, '{"format": "number", "allowed": [{"min": -40, "max": 125}]}', 10, 'admin')"""

T0 = 1_750_000_000_000_000


async def _records(log: EventLog, topic: str) -> list[tuple[bytes | None, bytes]]:
    out = []
    for p in range(log.partitions(topic)):
        first, end = await log.offsets(topic, p)
        offset = first
        while offset < end:
            batch = await log.read(topic, p, offset)
            out += [(r.key, r.value) for r in batch]
            offset = batch[-1].offset + 1
    return out


@pytest.mark.parametrize("deployment", ["run", "connect"])
async def test_readings_breaking_a_definition_are_dead_lettered_with_the_reason(
    deployment: str, tmp_path: Path, store: ChdbStore, request: pytest.FixtureRequest
) -> None:
    store.execute(DEFINITIONS)
    config = MillraceConfig.model_validate({"data_dir": str(tmp_path / "data")})

    def stores(purpose: Purpose) -> ProjectionStore:
        return ChdbStore(store.path)

    log: EventLog
    if deployment == "run":
        log = LocalEventLog(tmp_path / "log", config.log)
        log.open()
        adapters = Adapters(log, stores)
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        log = KafkaEventLog(
            KafkaLogConfig(
                bootstrap_servers=bootstrap,
                topic_prefix=f"test-{uuid.uuid4().hex[:12]}.",
                request_timeout_ms=10_000,
            )
        )
        await log.start([TELEMETRY, DEADLETTER])
        adapters = Adapters(log, stores, "faust", kafka_bootstrap=bootstrap)
    asm = Assembly(config, adapters)
    try:
        asm.build(["connect"])
        publisher = connector_publisher(asm)
        assert isinstance(publisher, DefinitionCheckingPublisher)
        batch = telemetry_batch(
            "press-7",
            [
                sample(T0, {"valve": "ajar", "temp": 21.5, "free": "anything"}),
                sample(T0 + 1000, {"valve": "open", "temp": 400.0}),
                sample(T0 + 2000, {"temp": "hot"}),
            ],
            received_us=T0 + 5000,
            source="line-a",
        )
        await publisher.publish(TELEMETRY, [("press-7", batch)])

        dead = [
            (key, asm.codec.decode(DEADLETTER, value))
            for key, value in await _records(log, DEADLETTER)
        ]
        got = sorted(
            (json.loads(d["payload"])["ts_us"], json.loads(d["payload"])["signal"], d)
            for _, d in dead
        )
        # ts, signal, value, words the reason must hold
        expected: list[tuple[int, str, Any, str]] = [
            (T0, "valve", "ajar", "allowed"),
            (T0 + 1000, "temp", 400.0, "allowed"),
            (T0 + 2000, "temp", "hot", "number"),
        ]
        assert len(got) == len(expected)
        for (ts, signal, d), (want_ts, want_signal, value, word) in zip(got, expected, strict=True):
            assert (ts, signal) == (want_ts, want_signal)
            assert d["error_type"] == "DefinitionViolation"
            assert d["reason"].startswith(f"{signal}: ") and word in d["reason"]
            assert d["stage"] == "connector:line-a"
            assert d["source_topic"] == TELEMETRY and d["key"] == b"press-7"
            assert json.loads(d["payload"]) == {
                "identity": "press-7",
                "signal": signal,
                "ts_us": ts,
                "value": value,
            }
        assert {key for key, _ in dead} == {b"press-7"}

        # the rest of the batch is published: the fitting values, nothing else
        telemetry = [asm.codec.decode(TELEMETRY, v) for _, v in await _records(log, TELEMETRY)]
        assert len(telemetry) == 1
        kept = _values_by_ts(telemetry[0])
        assert kept == {T0: {"temp": 21.5, "free": "anything"}, T0 + 1000: {"valve": "open"}}
        assert publisher.rejected == 3
    finally:
        asm.close()
        await log.close()


def _values_by_ts(batch: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """ts -> signal -> value of a decoded TelemetryBatch."""
    out: dict[int, dict[str, Any]] = {}
    for s in samples_of(batch):
        out[s["ts_us"]] = dict(s["values"])
    return out
