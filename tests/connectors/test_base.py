"""ProtocolConnector's shared behaviour with a scripted in-memory protocol: reconnect
with ResourceStatus, batching, dedup of re-sent values, deadband, mappings, commands."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from millrace.connectors._common.backoff import Backoff
from millrace.connectors._common.base import ProtocolConnector
from millrace.connectors._common.models import ConnectionBase, EndpointBase, MappingConfig
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.errors import ConnectorError
from millrace.pipeline.telemetry_columns import samples_of


class Scripted(ProtocolConnector):
    """connect() fails while ``down``; serve() emits queued values until ``drop``."""

    protocol = "scripted"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.down = False
        self.queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
        self.written: list[tuple[str, Any]] = []

    async def connect(self) -> None:
        if self.down:
            raise ConnectionRefusedError()

    async def serve(self) -> None:
        while (item := await self.queue.get()) is not None:
            ts, v = item
            self.emit(self.endpoints[0], v, ts_us=ts)
        raise ConnectorError("peer went away")

    async def disconnect(self) -> None:
        pass

    async def write(self, endpoint: EndpointBase, value: Any) -> None:
        self.written.append((endpoint.signal, value))


def conn(**kw: Any) -> ConnectionBase:
    return ConnectionBase(
        protocol="scripted",
        batch_ms=20,
        reconnect={"initial_ms": 10, "max_ms": 20, "jitter": 0},
        **kw,
    )


EP = EndpointBase(
    connection="c",
    identity="press-1",
    signal="temp",
    scale=2.0,
    offset=1.0,
    deadband=1.0,
    writable=True,
)


async def settle(c: Scripted, pub: MemoryEventPublisher, until: Any, timeout: float = 5) -> None:
    for _ in range(int(timeout / 0.01)):
        await c.flush()
        if until():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def readings(pub: MemoryEventPublisher) -> list[tuple[str, int, Any]]:
    return [
        (e["identity"], s["ts_us"], v)
        for _, e in pub.published.get("telemetry", [])
        for s in samples_of(e)
        for v in s["values"].values()
    ]


def states(pub: MemoryEventPublisher) -> list[tuple[str, str]]:
    return [
        (e["current_state"], e["info"])
        for _, e in pub.published.get("status", [])
        if e["resource_type"] == "connection"
    ]


def test_reconnect_dedup_deadband_and_status() -> None:
    async def main() -> None:
        pub = MemoryEventPublisher()
        c = Scripted("c", conn(), [EP])
        await c.start(pub)
        await c.wait_connected()
        for ts, v in [(1, 10.0), (2, 10.2), (3, 12.0)]:  # 10.2 is inside the deadband
            c.queue.put_nowait((ts, v))
        await settle(c, pub, lambda: len(readings(pub)) == 2)
        c.down = True
        c.queue.put_nowait(None)  # the session is lost; connects now fail
        await settle(c, pub, lambda: ("error", "Connection refused") in states(pub))
        c.down = False
        await c.wait_connected()
        # the server re-sends the last value after the re-subscription: dropped
        for ts, v in [(3, 12.0), (4, 30.0)]:
            c.queue.put_nowait((ts, v))
        await settle(c, pub, lambda: len(readings(pub)) == 3)
        await c.stop()
        assert readings(pub) == [("press-1", 1, 21.0), ("press-1", 3, 25.0), ("press-1", 4, 61.0)]
        s = states(pub)
        assert s[0] == ("connecting", "") and s[1] == ("running", "")
        assert ("reconnecting", "connection lost: peer went away") in s
        running_again = [info for st, info in s[2:] if st == "running"]
        assert running_again and running_again[0].startswith("reconnected; no data for")
        assert s[-1] == ("stopped", "")
        m = c.metrics()
        assert m["reconnects"] == 1 and m["duplicates_dropped"] == 1
        assert m["deadband_suppressed"] == 1

    asyncio.run(main())


def test_mapping_renames_and_scales() -> None:
    c = Scripted(
        "c",
        conn(),
        [EP],
        [
            MappingConfig(
                connection="c", identity="press-*", signal="temp", rename_signal="t", scale=10
            )
        ],
    )
    c.emit(EP, 1.0, ts_us=5)
    assert c.batcher.pending == {"press-1": {(5, 0): {"t": 30.0}}}


def test_command_is_unscaled_and_written() -> None:
    async def main() -> None:
        c = Scripted("c", conn(), [EP])
        await c.execute({"identity": "press-1", "resource": "temp", "value": 21.0})
        assert c.written == [("temp", 10.0)]
        with pytest.raises(ConnectorError, match="not writable"):
            await c.execute({"identity": "press-1", "resource": "other", "value": 1})

    asyncio.run(main())


class Failing(MemoryEventPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    async def publish(self, topic: str, events: Any) -> None:
        if self.fail:
            raise ConnectionError("log down")
        await super().publish(topic, events)


def test_store_and_forward_keeps_order_across_an_outage(tmp_path: Any) -> None:
    async def main() -> None:
        pub = Failing()
        c = Scripted("c", conn(), [EP.model_copy(update={"deadband": 0.0})], spool_dir=tmp_path)
        await c.start(pub)
        await c.wait_connected()
        for ts in range(1, 51):
            c.queue.put_nowait((ts, float(ts)))
            if ts % 10 == 0:
                await asyncio.sleep(0.03)
        await asyncio.sleep(0.1)
        assert c.metrics()["buffered_events"] > 0 and list(tmp_path.glob("*.seg"))
        pub.fail = False
        await settle(c, pub, lambda: len(readings(pub)) == 50)
        await c.stop()
        assert [ts for _, ts, _ in readings(pub)] == list(range(1, 51))
        assert c.metrics()["buffered_events"] == 0

    asyncio.run(main())


class Counting(Scripted):
    """Counts the status events it publishes (to account for every event)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.statuses = 0

    async def _publish_status(self, resource: str, rtype: str, current: str, info: str) -> None:
        if self.publisher is not None:
            self.statuses += 1
        await super()._publish_status(resource, rtype, current, info)


def overflow_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "store-and-forward buffer" in r.getMessage()
    ]


def test_buffer_overflow_is_logged_reported_and_counted_across_restarts(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="millrace.connectors")
    small = conn(buffer={"max_bytes": 4096, "segment_bytes": 1024})
    ep = EP.model_copy(update={"deadband": 0.0})

    async def main() -> None:
        pub = Failing()
        c = Counting("c", small, [ep], spool_dir=tmp_path)
        await c.start(pub)
        assert c.publisher is not None
        c.publisher.backoff = Backoff(0.001, 0.005)
        await c.wait_connected()
        ts = 0

        async def emit_until(cond: Any) -> None:
            nonlocal ts
            for _ in range(1000):
                if cond():
                    return
                ts += 1
                c.queue.put_nowait((ts, float(ts)))
                await asyncio.sleep(0)  # serve() emits it
                await c.flush()  # one TelemetryBatch event, spooled
            raise AssertionError("condition not reached")

        def dropped() -> int:
            return int(c.metrics()["buffer_dropped"])

        await emit_until(lambda: dropped() > 0)
        first = dropped()
        (warning,) = overflow_warnings(caplog)
        assert f"store-and-forward buffer full: {first} events (" in warning
        current, info = c.state
        assert current == "running"
        assert info.startswith(f"store-and-forward buffer full: {first} events (")
        assert " dropped since 20" in info

        await emit_until(lambda: dropped() > 3 * first)
        assert len(overflow_warnings(caplog)) == 1  # rate-limited
        c.overflow_report_s = 0.0
        before = dropped()
        await emit_until(lambda: dropped() > before)
        await asyncio.sleep(0.05)  # the reports' status events (spooled, maybe dropping)
        latest = overflow_warnings(caplog)[-1]
        assert f"store-and-forward buffer full: {dropped()} events (" in latest
        assert len(overflow_warnings(caplog)) >= 2
        assert c.state[1] == latest.split(": ", 1)[1].rsplit(" (", 1)[0]

        pub.fail = False  # the log is back: the buffer drains
        await settle(c, pub, lambda: c.metrics()["buffered_events"] == 0)
        await asyncio.sleep(0.05)
        total = dropped()
        info = c.state[1]
        assert info.startswith(f"store-and-forward buffer drained; {total} events (")
        assert "drained" in overflow_warnings(caplog)[-1]
        infos = [info for _, info in states(pub)]
        # the newest report survived the overflow, the drained one went straight out
        assert any(i.startswith(f"store-and-forward buffer full: {total} events") for i in infos)
        assert infos[-1] == info

        c.queue.put_nowait(None)  # the next change of state: the info is back to normal
        await settle(c, pub, lambda: states(pub)[-1][0] == "reconnecting")
        assert states(pub)[-1] == ("reconnecting", "connection lost: peer went away")
        await c.wait_connected()
        await c.stop()

        # every event was delivered or counted as dropped, exactly
        attempted = c.counters["batches"] + c.statuses
        delivered = sum(len(v) for v in pub.published.values())
        assert dropped() == attempted - delivered
        assert c.metrics()["buffer_dropped_bytes"] > 0

        # the count survives a restart, without being reported again
        n = len(caplog.records)
        again = Scripted("c", small, [ep], spool_dir=tmp_path)
        await again.start(pub)
        await again.wait_connected()
        assert again.metrics()["buffer_dropped"] == total
        assert again.metrics()["buffer_dropped_bytes"] == c.metrics()["buffer_dropped_bytes"]
        await again.stop()
        assert not overflow_warnings_since(caplog, n)

    asyncio.run(main())


def overflow_warnings_since(caplog: pytest.LogCaptureFixture, n: int) -> list[str]:
    return [r.getMessage() for r in caplog.records[n:] if "store-and-forward" in r.getMessage()]
