"""ProtocolConnector: what every protocol connector shares.

A protocol implements four coroutines — :meth:`connect`, :meth:`serve` (runs while
the session lives and raises or returns when it is lost), :meth:`disconnect` and,
where the protocol can write, :meth:`write` — and calls :meth:`emit` for each value it
reads. The base class wires the shared parts together:

* :func:`~millrace.connectors._common.supervisor.supervise` reconnects with exponential backoff
  and jitter, forever;
* :class:`~millrace.connectors._common.status.StatusReport` decides when the connection and each
  endpoint publish a ResourceStatus event (every change of state or info, store-and-
  forward overflows); a heartbeat every ``status_interval_s`` carries the metrics;
* :class:`~millrace.connectors._common.batcher.Batcher` applies scale/offset, deadband, mappings,
  drops readings whose source time does not advance, and groups them into TelemetryBatch
  events (one per identity every ``batch_ms`` or when ``max_batch_readings`` wait);
* :class:`~millrace.connectors._common.buffered.BufferedPublisher` stores and forwards while the
  log is unreachable;
* dead letters for input that cannot be decoded (:meth:`dead_letter`);
* Command write-back: :meth:`execute` finds the writable endpoint and calls write().
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from millrace.pipeline.clock import now_us
from millrace.pipeline.connector import Connector, EventPublisher
from millrace.pipeline.errors import ConnectorError
from millrace.pipeline.events import dead_letter, status_event
from millrace.pipeline.topics import DEADLETTER, STATUS, TELEMETRY

from .batcher import Batcher, numeric
from .buffered import BufferedPublisher
from .models import ConnectionBase, EndpointBase, MappingConfig
from .spool import Spool
from .status import OVERFLOW_REPORT_S, ReadingRate, StatusReport
from .supervisor import describe, supervise

__all__ = ["OVERFLOW_REPORT_S", "ProtocolConnector", "describe"]

log = logging.getLogger("millrace.connectors")

Clock = Callable[[], int]


class ProtocolConnector(Connector):
    """Base of the protocol connectors (see the module doc)."""

    protocol: ClassVar[str] = "?"
    #: deadband applied here; False when the protocol applies it at the source (OPC UA)
    client_deadband: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        connection: ConnectionBase,
        endpoints: Sequence[EndpointBase] = (),
        mappings: Sequence[MappingConfig] = (),
        *,
        service: str = "default",
        spool_dir: Path | None = None,
        clock: Clock | None = None,
        runner: str | None = None,
        status_interval_s: float = 30.0,
    ) -> None:
        self.name = name
        self.connection = connection
        self.endpoints = list(endpoints)
        self.mappings = list(mappings)
        self.service = service
        self.spool_dir = spool_dir
        self.clock = clock or now_us
        self.runner = runner or socket.gethostname()
        self.status_interval_s = status_interval_s
        self.resource_id = f"{self.protocol}:{name}"
        self.source = f"{self.protocol}:{name}"
        self.publisher: BufferedPublisher | None = None
        self.batcher = Batcher(self.mappings, connection.max_batch_readings)
        self.status = StatusReport(self.resource_id)
        self._by_key = {(e.identity, e.signal): e for e in self.endpoints}
        self._flush_now = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self.connected_event = asyncio.Event()
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self.counters: dict[str, float] = dict.fromkeys(
            (
                "readings",
                "batches",
                "errors",
                "connect_errors",
                "reconnects",
                "duplicates_dropped",
                "deadband_suppressed",
                "deadletters",
                "commands_written",
                "commands_failed",
            ),
            0.0,
        )
        self._rate = ReadingRate(time.monotonic())

    # -- to implement ---------------------------------------------------------------
    @abstractmethod
    async def connect(self) -> None:
        """Open the session (raise ConnectorError/OSError with a clear reason)."""

    @abstractmethod
    async def serve(self) -> None:
        """Read while connected: subscriptions or a poll loop calling :meth:`emit`.
        Return or raise when the session is lost; cancelled on stop."""

    @abstractmethod
    async def disconnect(self) -> None:
        """Close the session; must not raise."""

    async def write(self, endpoint: EndpointBase, value: Any) -> None:
        """Write ``value`` (already unscaled to the device's units) to ``endpoint``."""
        raise ConnectorError(f"{self.protocol} connections cannot write")

    # -- helpers for protocols ------------------------------------------------------------
    def now_us(self) -> int:
        return self.clock()

    @property
    def connected(self) -> bool:
        return self.connected_event.is_set()

    @property
    def overflow_report_s(self) -> float:
        return self.status.overflow_report_s

    @overflow_report_s.setter
    def overflow_report_s(self, seconds: float) -> None:
        self.status.overflow_report_s = seconds

    def emit(
        self,
        endpoint: EndpointBase,
        value: Any,
        ts_us: int | None = None,
        quality: int = 0,
        batch_id: str | None = None,
    ) -> bool:
        """One value read from ``endpoint``: scaled, deadbanded, mapped and batched
        (into the batch of ``batch_id`` when the protocol names one, ``Batcher.add``).

        Returns False when the reading was dropped (deadband, or a source time that
        does not advance: a duplicate after a reconnect)."""
        if numeric(value) and (endpoint.scale != 1.0 or endpoint.offset != 0.0):
            value = value * endpoint.scale + endpoint.offset
        return self.emit_reading(
            endpoint.identity,
            endpoint.signal,
            value,
            ts_us,
            quality,
            deadband=endpoint.deadband if self.client_deadband else 0.0,
            batch_id=batch_id,
        )

    def emit_reading(
        self,
        identity: str,
        signal: str,
        value: Any,
        ts_us: int | None = None,
        quality: int = 0,
        deadband: float = 0.0,
        batch_id: str | None = None,
    ) -> bool:
        """A reading not tied to an endpoint (e.g. from an MQTT mapping)."""
        ts = self.now_us() if ts_us is None else int(ts_us)
        dropped = self.batcher.add(identity, signal, value, ts, quality, deadband, batch_id)
        if dropped is not None:
            self.counters[dropped] += 1
            return False
        self.counters["readings"] += 1
        if self.batcher.full:
            self._flush_now.set()
        return True

    async def dead_letter(
        self, payload: bytes, reason: str, error_type: str = "DecodeError", key: str | None = None
    ) -> None:
        """Input the connector cannot use goes to ``deadletter``; the connector goes on."""
        self.counters["deadletters"] += 1
        self.counters["errors"] += 1
        event = dead_letter(
            source_topic="",
            payload=payload,
            reason=reason,
            error_type=error_type,
            stage=f"connector:{self.source}",
            ts_us=self.now_us(),
            key=key.encode() if key is not None else None,
        )
        if self.publisher is not None:
            await self.publisher.publish(DEADLETTER, [(key or self.resource_id, event)])

    def endpoint_state(self, endpoint: EndpointBase, current: str, info: str = "") -> None:
        """Report an endpoint's state (published when it changes)."""
        if not self.status.set_endpoint((endpoint.identity, endpoint.signal), current, info):
            return
        if current == "error":
            self.counters["errors"] += 1
        self._spawn(
            self._publish_status(self._endpoint_resource(endpoint), "endpoint", current, info)
        )

    def _endpoint_resource(self, endpoint: EndpointBase) -> str:
        return f"{self.resource_id}/{endpoint.identity}/{endpoint.signal}"

    # -- status ---------------------------------------------------------------------
    @property
    def state(self) -> tuple[str, str]:
        """(current state, info) of the connection."""
        return self.status.state

    def current_state(self) -> tuple[str, str]:
        """The state as last set, without the buffer's report (for the supervisor)."""
        return self.status.current

    def set_state(self, current: str, info: str = "") -> None:
        if self.status.set_state(current, info):
            self._publish_connection()

    def _buffer_changed(self) -> None:
        """The spool changed (BufferedPublisher's ``on_change``)."""
        assert self.publisher is not None
        if self.status.buffer_changed(self.publisher.spool, self.now_us(), time.monotonic()):
            self._publish_connection()

    def _publish_connection(self) -> None:
        self._spawn(self._publish_status(self.resource_id, "connection", *self.state))

    def metrics(self) -> dict[str, float]:
        out = dict(self.counters)
        out["readings_per_s"] = round(self._rate(self.counters["readings"], time.monotonic()), 3)
        if self.publisher is not None:
            out["buffered_events"] = float(self.publisher.spool.events)
            out["buffered_bytes"] = float(self.publisher.spool.size_bytes)
            out["buffer_dropped"] = float(self.publisher.spool.dropped_events)
            out["buffer_dropped_bytes"] = float(self.publisher.spool.dropped_bytes)
        return out

    def snapshot(self) -> dict[str, Any]:
        """State and metrics, for the API."""
        return {
            "name": self.name,
            "protocol": self.protocol,
            "resource_id": self.resource_id,
            "service_id": self.service,
            "desired_state": "running" if self._tasks else "stopped",
            "current_state": self.state[0],
            "info": self.state[1],
            "endpoints": len(self.endpoints),
            "metrics": self.metrics(),
        }

    async def _publish_status(self, resource: str, rtype: str, current: str, info: str) -> None:
        if self.publisher is None:
            return
        event = status_event(
            resource,
            service_id=self.service,
            resource_type=rtype,
            desired_state="running" if self._tasks else "stopped",
            current_state=current,
            info=info,
            runner=self.runner,
            ts_us=self.now_us(),
            metrics=self.metrics() if rtype == "connection" else None,
        )
        try:
            await self.publisher.publish(STATUS, [(resource, event)])
        except Exception:  # pragma: no cover - the buffered publisher spools instead
            log.exception("%s: status not published", resource)

    def _spawn(self, coro: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop (tests calling emit directly)
            coro.close()
            return
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, publisher: EventPublisher) -> None:
        if self._tasks:
            return
        c = self.connection
        spool = Spool(self.spool_dir, c.buffer.max_bytes, c.buffer.segment_bytes)
        self.status.buffer_opened(spool)
        self.publisher = BufferedPublisher(publisher, spool, on_change=self._buffer_changed)
        self._tasks = [
            asyncio.create_task(supervise(self, c.reconnect), name=f"millrace-{self.resource_id}"),
            asyncio.create_task(self._flusher(), name=f"millrace-{self.resource_id}-batch"),
            asyncio.create_task(self._heartbeat(), name=f"millrace-{self.resource_id}-status"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        while pending := [t for t in tasks if not t.done()]:
            # a cancel can be swallowed by a library's wait_for: repeat until they end
            await asyncio.wait(pending, timeout=0.5)
            for t in pending:
                t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if not tasks:
            return
        try:
            await self.disconnect()
        except Exception:
            log.exception("%s: disconnect failed", self.resource_id)
        self.connected_event.clear()
        await self.flush()
        self.set_state("stopped", "")
        if self._side_tasks:
            await asyncio.gather(*list(self._side_tasks), return_exceptions=True)
        if self.publisher is not None:
            await self.publisher.flush(timeout_s=2.0)
            if self._side_tasks:  # e.g. the report of a buffer that drained meanwhile
                await asyncio.gather(*list(self._side_tasks), return_exceptions=True)
            await self.publisher.close()

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        await asyncio.wait_for(self.connected_event.wait(), timeout_s)

    async def _flusher(self) -> None:
        period = self.connection.batch_ms / 1000
        while True:
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                async with asyncio.timeout(period):
                    await self._flush_now.wait()
            except TimeoutError:
                pass
            self._flush_now.clear()
            await self.flush()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval_s)
            await self._publish_status(self.resource_id, "connection", *self.state)

    def discard_pending(self) -> None:
        """Forget what is batched and not yet published (e.g. a half-read file)."""
        self.counters["readings"] -= self.batcher.discard()

    async def flush(self) -> None:
        """Publish what is batched as TelemetryBatch events (one per identity); returns
        once everything emitted before the call was handed to the publisher (also what
        a concurrent flush took)."""
        async with self._flush_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        if not self.batcher.waiting or self.publisher is None:
            return
        events = self.batcher.take(self.source, self.now_us())
        await self.publisher.publish(TELEMETRY, events)
        self.counters["batches"] += len(events)

    # -- commands -------------------------------------------------------------------------
    def handles(self, identity: str, signal: str) -> bool:
        ep = self._by_key.get((identity, signal))
        return ep is not None and ep.writable

    async def execute(self, command: dict[str, Any]) -> None:
        """Write a Command event's value to its endpoint; ConnectorError if impossible."""
        ep = self._by_key.get((command["identity"], command["resource"]))
        if ep is None or not ep.writable:
            raise ConnectorError(
                f"{self.resource_id}: {command['identity']}/{command['resource']} is not writable"
            )
        value = command["value"]
        if numeric(value) and (ep.scale != 1.0 or ep.offset != 0.0):
            value = (value - ep.offset) / ep.scale
        try:
            await self.write(ep, value)
        except Exception as exc:
            self.counters["commands_failed"] += 1
            self.endpoint_state(ep, "error", f"write failed: {describe(exc)}")
            if isinstance(exc, ConnectorError):
                raise
            raise ConnectorError(f"{self._endpoint_resource(ep)}: {describe(exc)}") from exc
        self.counters["commands_written"] += 1
        self.endpoint_state(ep, "running", "")
