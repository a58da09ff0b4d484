"""ProtocolConnector: what every protocol connector shares.

A protocol implements four coroutines — :meth:`connect`, :meth:`serve` (runs while
the session lives and raises or returns when it is lost), :meth:`disconnect` and,
where the protocol can write, :meth:`write` — and calls :meth:`emit` for each value it
reads. The base class supplies the rest:

* a supervisor that reconnects with exponential backoff and jitter, forever;
* ResourceStatus events for the connection and each endpoint on every change of
  state or info (``connecting``, ``running``, ``reconnecting``, ``error``, ``stopped``)
  and a heartbeat every ``status_interval_s`` carrying the metrics; after a
  reconnect the info names the gap in the data;
* scale/offset, deadband, mappings (rename, scale) and dropping of readings whose
  source time does not advance (a re-subscription that resends the last value);
* batching into TelemetryBatch events (one per identity every ``batch_ms`` or when
  ``max_batch_readings`` are waiting);
* store-and-forward through :class:`~connectors._common.spool.BufferedPublisher`; when
  its bound drops events a WARNING is logged and the connection's info says how many
  (at the first drop, then at most every ``overflow_report_s`` while it lasts), and once
  the buffer has drained, how many were lost, until the next change of state;
* dead letters for input that cannot be decoded (:meth:`dead_letter`);
* Command write-back: :meth:`execute` finds the writable endpoint and calls write().
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import socket
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pipeline.connector import Connector, EventPublisher
from pipeline.errors import ConnectorError
from pipeline.processors.base import dead_letter
from pipeline.topics import DEADLETTER, STATUS, TELEMETRY

from .backoff import Backoff
from .models import ConnectionBase, EndpointBase, MappingConfig
from .spool import BufferedPublisher, Spool

log = logging.getLogger("millrace.connectors")

Clock = Callable[[], int]

#: a spool overflow is reported at its first drop, then at most once per this many s
OVERFLOW_REPORT_S = 60.0


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def describe(exc: BaseException) -> str:
    """A one-line, user-facing reason for a connection failure."""
    if isinstance(exc, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(exc, socket.gaierror):
        return "Host not found"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "Host not reachable (timeout)"
    if isinstance(exc, OSError) and exc.errno in (101, 113):
        return "Host not reachable"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ConnectorError) else f"{type(exc).__name__}: {text}"


@dataclass
class _Overflow:
    """Drops by the store-and-forward bound, from the first until the buffer drains."""

    since_us: int
    events: int  # the spool's dropped counts before the first drop
    bytes: int
    reported: float  # time.monotonic() of the last report


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
        self.clock = clock or wall_clock_us
        self.runner = runner or socket.gethostname()
        self.status_interval_s = status_interval_s
        self.resource_id = f"{self.protocol}:{name}"
        self.source = f"{self.protocol}:{name}"
        self.publisher: BufferedPublisher | None = None
        self._by_key = {(e.identity, e.signal): e for e in self.endpoints}
        self._state = ("stopped", "")
        self._endpoint_states: dict[tuple[str, str], tuple[str, str]] = {}
        self._last_value: dict[tuple[str, str], Any] = {}
        self._last_ts: dict[tuple[str, str], int] = {}
        #: drop a reading whose source time does not advance (a value re-sent after a
        #: re-subscription); False where times legitimately repeat (overlapping files)
        self.drop_repeated_times = True
        self._pending: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
        self._pending_n = 0
        self._flush_now = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._lost_at_us: int | None = None
        self._connected = asyncio.Event()
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
        self._rate = (time.monotonic(), 0.0, 0.0)  # (t, readings at t, readings/s)
        self.overflow_report_s = OVERFLOW_REPORT_S
        self._overflow: _Overflow | None = None
        self._dropped_seen = (0, 0)  # the spool's dropped (events, bytes) last looked at
        self._buffer_info = ""  # about the store-and-forward buffer, after the state's info

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
        return self._connected.is_set()

    def emit(
        self,
        endpoint: EndpointBase,
        value: Any,
        ts_us: int | None = None,
        quality: int = 0,
    ) -> bool:
        """One value read from ``endpoint``: scaled, deadbanded, mapped and batched.

        Returns False when the reading was dropped (deadband, or a source time that
        does not advance: a duplicate after a reconnect)."""
        if _numeric(value) and (endpoint.scale != 1.0 or endpoint.offset != 0.0):
            value = value * endpoint.scale + endpoint.offset
        return self.emit_reading(
            endpoint.identity,
            endpoint.signal,
            value,
            ts_us,
            quality,
            deadband=endpoint.deadband if self.client_deadband else 0.0,
        )

    def emit_reading(
        self,
        identity: str,
        signal: str,
        value: Any,
        ts_us: int | None = None,
        quality: int = 0,
        deadband: float = 0.0,
    ) -> bool:
        """A reading not tied to an endpoint (e.g. from an MQTT mapping)."""
        ts = self.now_us() if ts_us is None else int(ts_us)
        key = (identity, signal)
        last_ts = self._last_ts.get(key)
        if self.drop_repeated_times and last_ts is not None and ts <= last_ts:
            self.counters["duplicates_dropped"] += 1
            return False
        if deadband > 0 and quality == 0 and _numeric(value):
            prev = self._last_value.get(key)
            if _numeric(prev) and abs(value - prev) < deadband:
                self.counters["deadband_suppressed"] += 1
                return False
        self._last_ts[key] = ts
        if quality == 0:
            self._last_value[key] = value
        identity, signal, value = self._map(identity, signal, value)
        if value is None:  # no value (e.g. a bad-quality reading): the schema has no null
            value = math.nan
        elif type(value) is int and not -(2**63) <= value < 2**63:
            value = float(value)  # beyond Avro's long (a uint64 counter, say)
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)  # NaN/inf are kept as text rather than lost
        sample = self._pending.setdefault(identity, {}).setdefault((ts, quality), {})
        sample[signal] = value
        self._pending_n += 1
        self.counters["readings"] += 1
        if self._pending_n >= self.connection.max_batch_readings:
            self._flush_now.set()
        return True

    def _map(self, identity: str, signal: str, value: Any) -> tuple[str, str, Any]:
        for m in self.mappings:
            if m.topic is not None:
                continue  # payload mappings are applied by the protocol
            if fnmatch.fnmatchcase(identity, m.identity) and fnmatch.fnmatchcase(signal, m.signal):
                if _numeric(value) and (m.scale != 1.0 or m.offset != 0.0):
                    value = value * m.scale + m.offset
                return (m.rename_identity or identity, m.rename_signal or signal, value)
        return identity, signal, value

    async def dead_letter(
        self, payload: bytes, reason: str, error_type: str = "DecodeError", key: str | None = None
    ) -> None:
        """Input the connector cannot use goes to ``deadletter``; the connector goes on."""
        self.counters["deadletters"] += 1
        self.counters["errors"] += 1
        event = dead_letter(
            None,
            reason=reason,
            error_type=error_type,
            stage=f"connector:{self.source}",
            ts_us=self.now_us(),
            payload=payload,
            topic="",
            key=key.encode() if key is not None else None,
        )
        if self.publisher is not None:
            await self.publisher.publish(DEADLETTER, [(key or self.resource_id, event)])

    def endpoint_state(self, endpoint: EndpointBase, current: str, info: str = "") -> None:
        """Report an endpoint's state (published when it changes)."""
        key = (endpoint.identity, endpoint.signal)
        if self._endpoint_states.get(key) == (current, info):
            return
        self._endpoint_states[key] = (current, info)
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
        current, info = self._state
        if self._buffer_info:
            info = f"{info}; {self._buffer_info}" if info else self._buffer_info
        return current, info

    def _set_state(self, current: str, info: str = "") -> None:
        if self._state == (current, info):
            return
        self._state = (current, info)
        if self._overflow is None:  # a drained buffer's report lasts until a change
            self._buffer_info = ""
        log.info("%s: %s %s", self.resource_id, current, info)
        self._spawn(self._publish_status(self.resource_id, "connection", *self.state))

    def _buffer_changed(self) -> None:
        """The spool changed (BufferedPublisher's ``on_change``): report what its bound
        dropped: at the first drop, at most every ``overflow_report_s`` after it, and
        once the buffer has drained."""
        assert self.publisher is not None
        spool = self.publisher.spool
        o = self._overflow
        if spool.dropped_bytes > self._dropped_seen[1]:
            now = time.monotonic()
            if o is None:
                o = self._overflow = _Overflow(self.now_us(), *self._dropped_seen, now)
                self._report_overflow(o, drained=False)
            elif now - o.reported >= self.overflow_report_s:
                o.reported = now
                self._report_overflow(o, drained=False)
            self._dropped_seen = (spool.dropped_events, spool.dropped_bytes)
        if o is not None and not spool.size_bytes:
            self._overflow = None
            self._report_overflow(o, drained=True)

    def _report_overflow(self, o: _Overflow, drained: bool) -> None:
        assert self.publisher is not None
        spool = self.publisher.spool
        lost = f"{spool.dropped_events - o.events} events ({_size(spool.dropped_bytes - o.bytes)})"
        since = datetime.fromtimestamp(o.since_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if drained:
            text = f"store-and-forward buffer drained; {lost} were dropped since {since}"
        else:
            text = f"store-and-forward buffer full: {lost} dropped since {since}"
        # (buffer_dropped: the metric, which counts across outages and restarts)
        log.warning("%s: %s (buffer_dropped %d)", self.resource_id, text, spool.dropped_events)
        if text != self._buffer_info:
            self._buffer_info = text
            self._spawn(self._publish_status(self.resource_id, "connection", *self.state))

    def metrics(self) -> dict[str, float]:
        now = time.monotonic()
        t0, n0, rate = self._rate
        if now - t0 >= 1.0:
            rate = (self.counters["readings"] - n0) / (now - t0)
            self._rate = (now, self.counters["readings"], rate)
        out = dict(self.counters)
        out["readings_per_s"] = round(rate, 3)
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

    def _status_event(self, resource: str, rtype: str, current: str, info: str) -> dict[str, Any]:
        return {
            "resource_id": resource,
            "service_id": self.service,
            "resource_type": rtype,
            "desired_state": "running" if self._tasks else "stopped",
            "current_state": current,
            "info": info,
            "runner": self.runner,
            "ts_us": self.now_us(),
            "metrics": self.metrics() if rtype == "connection" else {},
        }

    async def _publish_status(self, resource: str, rtype: str, current: str, info: str) -> None:
        if self.publisher is None:
            return
        try:
            await self.publisher.publish(
                STATUS, [(resource, self._status_event(resource, rtype, current, info))]
            )
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
        # drops before (a restart) are in the metrics, not reported again
        self._dropped_seen = (spool.dropped_events, spool.dropped_bytes)
        self._overflow = None
        self.publisher = BufferedPublisher(publisher, spool, on_change=self._buffer_changed)
        self._tasks = [
            asyncio.create_task(self._supervise(), name=f"millrace-{self.resource_id}"),
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
        self._connected.clear()
        await self.flush()
        self._set_state("stopped", "")
        if self._side_tasks:
            await asyncio.gather(*list(self._side_tasks), return_exceptions=True)
        if self.publisher is not None:
            await self.publisher.flush(timeout_s=2.0)
            if self._side_tasks:  # e.g. the report of a buffer that drained meanwhile
                await asyncio.gather(*list(self._side_tasks), return_exceptions=True)
            await self.publisher.close()

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def _supervise(self) -> None:
        r = self.connection.reconnect
        backoff = Backoff(r.initial_ms / 1000, r.max_ms / 1000, r.factor, r.jitter)
        first = True
        while True:
            if self._state[0] != "error":  # retries after an error stay "error"
                self._set_state("connecting" if first else "reconnecting", self._state[1])
            try:
                await self.connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters["errors"] += 1
                # every failed attempt, even when the state does not change (the status
                # processor counts the increase as connection_error device metrics)
                self.counters["connect_errors"] += 1
                await self._safe_disconnect()
                if self._lost_at_us is None:
                    self._lost_at_us = self.now_us()
                self._set_state("error", describe(exc))
                await asyncio.sleep(backoff.next())
                first = False
                continue
            backoff.reset()
            info = ""
            if self._lost_at_us is not None and not first:
                self.counters["reconnects"] += 1
                gap_s = (self.now_us() - self._lost_at_us) / 1e6
                info = f"reconnected; no data for {gap_s:.1f} s"
            self._lost_at_us = None
            self._connected.set()
            self._set_state("running", info)
            first = False
            try:
                await self.serve()
                reason = "connection closed"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters["errors"] += 1
                reason = describe(exc)
            self._connected.clear()
            self._lost_at_us = self.now_us()
            await self._safe_disconnect()
            self._set_state("reconnecting", f"connection lost: {reason}")
            await asyncio.sleep(backoff.next())

    async def _safe_disconnect(self) -> None:
        try:
            await self.disconnect()
        except Exception:
            log.debug("%s: disconnect failed", self.resource_id, exc_info=True)

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
        self.counters["readings"] -= self._pending_n
        self._pending, self._pending_n = {}, 0

    async def flush(self) -> None:
        """Publish what is batched as TelemetryBatch events (one per identity); returns
        once everything emitted before the call was handed to the publisher (also what
        a concurrent flush took)."""
        async with self._flush_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        if not self._pending or self.publisher is None:
            return
        pending, self._pending, self._pending_n = self._pending, {}, 0
        received = self.now_us()
        events = [
            (
                identity,
                {
                    "identity": identity,
                    "source": self.source,
                    "received_us": received,
                    "samples": [
                        {"ts_us": ts, "values": values, "quality": q}
                        for (ts, q), values in sorted(samples.items())
                    ],
                },
            )
            for identity, samples in pending.items()
        ]
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
        if _numeric(value) and (ep.scale != 1.0 or ep.offset != 0.0):
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


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    exp = min((n.bit_length() - 1) // 10, 3)
    return f"{n / 1024**exp:.1f} {('KiB', 'MiB', 'GiB')[exp - 1]}"


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
