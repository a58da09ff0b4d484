"""A QoS 1 redelivery through a real Mosquitto maps to the batch id of the first
delivery, and the telemetry fold stores it once (issue 14 item 1)."""

from __future__ import annotations

import uuid

import pytest

from millrace.connectors.mqtt.connector import MqttConnector
from millrace.pipeline.batches import mqtt_batch_id
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.telemetry_columns import samples_of
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

from .conftest import Broker
from .test_broker import connection, endpoint, publish, readings, running, until

pytestmark = pytest.mark.integration


async def test_a_redelivered_message_is_stored_once(mosquitto: Broker, store: ChdbStore) -> None:
    conn = connection(
        mosquitto.port, client_id=f"millrace-dup-{uuid.uuid4().hex[:8]}", clean_session=False
    )
    identity = f"dup-{uuid.uuid4().hex[:6]}"
    eps = [endpoint("dup/+/v", "{1}", "v", qos=1, data_type="float64")]
    topic = f"dup/{identity}/v"
    # no timestamp in the payload: the connector stamps the receive time, so the
    # redelivery's reading differs from the first one's and only the id tells
    first = MemoryEventPublisher()
    async with running(MqttConnector("c", conn, eps), first) as a:
        assert a._client is not None
        a._client._client.manual_ack_set(True)  # the PUBACK never leaves: as if lost
        await publish(mosquitto.port, [(topic, b"21.5", 1), (f"dup/{identity}-2/v", b"7", 0)])
        await until(lambda: len(readings(first)) == 2, "the first delivery")
    second = MemoryEventPublisher()
    async with running(MqttConnector("c", conn, eps), second):
        await until(lambda: len(readings(second)) == 1, "the redelivery (DUP)")
    (one,) = [e for _, e in first.published[TELEMETRY] if e["identity"] == identity]
    (two,) = [e for _, e in second.published[TELEMETRY]]
    assert one["batch_id"] == two["batch_id"] and one["batch_id"].startswith("mqtt:")
    assert samples_of(one)[0]["ts_us"] != samples_of(two)[0]["ts_us"]
    (qos0,) = [e for _, e in first.published[TELEMETRY] if e["identity"] != identity]
    assert not qos0["batch_id"].startswith("mqtt:")  # QoS 0: never redelivered, own id
    ids = {mqtt_batch_id("mqtt:c", identity, topic, b"21.5", mid) for mid in range(1, 50)}
    assert one["batch_id"] in ids  # derived from connection, identity, topic, payload, mid

    log = MemoryEventLog()
    await LogPublisher(log).publish(
        TELEMETRY, [(e["identity"], e) for p in (first, second) for _, e in p.published[TELEMETRY]]
    )
    runtime = EmbeddedRuntime(log, ProjectionWriter(store), processors(), consumer="mqtt-dup")
    await runtime.run_until_idle()
    runtime.close()
    rows = store.execute("SELECT identity, value FROM millrace.readings ORDER BY identity").rows
    assert [tuple(r) for r in rows] == [(identity, 21.5), (f"{identity}-2", 7.0)]
