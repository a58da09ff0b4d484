"""The Modbus TCP connector (pymodbus 3.x asyncio client).

Modbus has no subscriptions: the connector polls. Endpoints are grouped per (unit,
register kind, poll interval) and nearby addresses coalesced into few requests
(:mod:`.planner`); one task per poll interval reads its requests in turn on a fixed
schedule (a poll that overruns skips the missed ticks, counted in ``polls_skipped``).
A Modbus server answers one request at a time, and many gateways break when requests
interleave, so every request of a connection, polls and writes alike, goes through
one client under one lock.

Failures are kept apart by their reach:

* a Modbus exception response (illegal address, illegal function, busy, gateway
  errors) concerns the endpoints of that request: they get an ``error`` status naming
  the exception and the addresses, the other requests go on. A coalesced request that
  is refused for an illegal address is split into one request per endpoint, so that
  one bad address (or an unmapped gap) costs only its own endpoint;
* a request without an answer is reported the same way; pymodbus closes the link after
  three in a row, which ends the session;
* losing the TCP connection ends :meth:`serve`, and the base class reconnects with
  backoff. pymodbus's own reconnect is turned off so that there is one reconnect policy
  and one status for it;
* registers that do not decode (text that is not UTF-8) go to the dead letters, once
  per distinct payload, and mark the endpoint in error.

Each value is emitted with the time its request was sent as its timestamp.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from millrace.connectors._common.base import ProtocolConnector, describe
from millrace.connectors._common.models import ConnectionBase, EndpointBase, MappingConfig
from millrace.pipeline.errors import ConfigError, ConnectorError

from . import codec
from .config import BIT_KINDS, KIND_NAMES, ModbusConnection, ModbusEndpoint
from .planner import Read, Span, plan, split
from .spec import endpoint_violations

log = logging.getLogger("millrace.connectors.modbus")

#: Modbus exception codes (Modbus Application Protocol v1.1b3, 7)
EXCEPTIONS: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
#: exception codes after which a coalesced read is retried endpoint by endpoint
_SPLIT_ON = frozenset({2, 3})


def where(kind: str, address: int, count: int, unit_id: int) -> str:
    """'holding registers 100..101 of unit 1': the addresses of a request, for people."""
    one, many = KIND_NAMES.get(kind, (kind, kind))
    span = f"{one} {address}" if count == 1 else f"{many} {address}..{address + count - 1}"
    return f"{span} of unit {unit_id}"


def exception_info(code: int, kind: str, address: int, count: int, unit_id: int) -> str:
    """'illegal data address at holding register 40100 of unit 1 (exception 2)'."""
    name = EXCEPTIONS.get(code, "exception")
    return f"{name} at {where(kind, address, count, unit_id)} (exception {code})"


class ModbusConnector(ProtocolConnector):
    """Polls a Modbus TCP server (see the module doc)."""

    protocol = "modbus"

    def __init__(
        self,
        name: str,
        connection: ConnectionBase,
        endpoints: Sequence[EndpointBase] = (),
        mappings: Sequence[MappingConfig] = (),
        **kw: Any,
    ) -> None:
        if not isinstance(connection, ModbusConnection):
            raise ConfigError(f"modbus:{name}: a ModbusConnection is needed")
        super().__init__(name, connection, endpoints, mappings, **kw)
        self.conf = connection
        for counter in ("requests", "polls_skipped", "reads_split"):
            self.counters[counter] = 0.0
        #: span key -> (endpoint, concrete data type)
        self._targets: dict[int, tuple[ModbusEndpoint, str]] = {}
        self._decoders: dict[int, Callable[[Sequence[int]], codec.Value]] = {}
        #: endpoints that are not polled, with why (shown as their status)
        self._config_errors: list[tuple[EndpointBase, str]] = []
        spans: list[Span] = []
        for i, ep in enumerate(self.endpoints):
            if not isinstance(ep, ModbusEndpoint):
                self._config_errors.append((ep, "not a Modbus endpoint"))
                continue
            errors = [
                v
                for v in endpoint_violations(f"$.endpoints[{i}]", connection, ep)
                if v.level == "error"
            ]
            if errors:
                self._config_errors.append((ep, "; ".join(v.description for v in errors)))
                continue
            dtype = codec.resolve(ep.data_type, ep.kind)
            size = 1 if ep.kind in BIT_KINDS else codec.register_count(dtype, ep.length)
            unit = connection.unit_id if ep.unit_id is None else ep.unit_id
            spans.append(Span(i, unit, ep.kind, ep.interval_ms, ep.address, size))
            self._targets[i] = (ep, dtype)
            self._decoders[i] = codec.decoder(dtype, ep.byte_order, ep.word_order)
        #: the requests of a session, per poll interval
        self.reads: list[Read] = plan(
            spans,
            max_registers=connection.max_registers_per_read,
            max_bits=connection.max_bits_per_read,
            max_gap_registers=connection.max_gap_registers,
            max_gap_bits=connection.max_gap_bits,
        )
        self._client: AsyncModbusTcpClient | None = None
        self._lost = asyncio.Event()
        self._lock = asyncio.Lock()
        self._bad_payload: dict[int, bytes] = {}

    # -- session ------------------------------------------------------------------
    async def connect(self) -> None:
        for ep, why in self._config_errors:
            self.endpoint_state(ep, "error", f"not polled: {why}")
        c = self.conf
        lost = asyncio.Event()

        def link(up: bool) -> None:  # pymodbus calls it on connect and on loss
            if not up:
                lost.set()

        client = AsyncModbusTcpClient(
            c.host,
            port=c.port,
            timeout=c.timeout_ms / 1000,
            retries=0,
            reconnect_delay=0,  # the base class reconnects, with its backoff and status
            name=self.resource_id,
            trace_connect=link,
        )
        self._client, self._lost = client, lost
        if not await client.connect():
            await self._why_not_connected()

    async def _why_not_connected(self) -> None:
        """pymodbus reports a failed connect as False, keeping the reason to its log;
        one plain TCP connect finds the reason for the status (refused, timeout,
        unknown host)."""
        c = self.conf
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(c.host, c.port), c.timeout_ms / 1000
            )
        except (OSError, TimeoutError) as exc:
            raise ConnectorError(f"{describe(exc)} ({c.host}:{c.port})") from exc
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        raise ConnectorError(f"could not open a Modbus session with {c.host}:{c.port}")

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # must not raise
                log.debug("%s: close failed", self.resource_id, exc_info=True)

    async def serve(self) -> None:
        by_interval: dict[int, list[Read]] = {}
        for r in self.reads:
            by_interval.setdefault(r.interval_ms, []).append(r)
        watcher = asyncio.create_task(self._lost.wait())
        tasks = [
            asyncio.create_task(self._poll_loop(interval, reads), name=f"{self.resource_id}-poll")
            for interval, reads in sorted(by_interval.items())
        ]
        try:
            done, _ = await asyncio.wait([watcher, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not watcher and (exc := t.exception()) is not None:
                    raise exc
            raise ConnectorError("connection closed by the device")
        finally:
            for t in (watcher, *tasks):
                t.cancel()
            await asyncio.gather(watcher, *tasks, return_exceptions=True)

    # -- polling ------------------------------------------------------------------
    async def _poll_loop(self, interval_ms: int, reads: list[Read]) -> None:
        loop = asyncio.get_running_loop()
        period = interval_ms / 1000
        due = loop.time()
        while True:
            next_reads: list[Read] = []
            for r in reads:
                next_reads.extend(await self._poll(r))
            reads = next_reads
            due += period
            now = loop.time()
            if due < now:  # overran: skip the missed ticks rather than burst
                missed = math.ceil((now - due) / period)
                self.counters["polls_skipped"] += missed
                due += missed * period
            await asyncio.sleep(due - now)

    async def _poll(self, read: Read) -> list[Read]:
        """Read once; returns the reads to use from now on (``read``, or its parts
        when the device refused it as a whole)."""
        try:
            ts, response = await self._request(read)
        except ModbusIOException:
            info = f"no response within {self.conf.timeout_ms} ms from {self._where(read)}"
            self._fail(read, info)
            return [read]
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            if code in _SPLIT_ON and len(read.spans) > 1:
                self.counters["reads_split"] += 1
                parts: list[Read] = []
                for part in split(read):
                    parts.extend(await self._poll(part))
                return parts
            info = exception_info(code, read.kind, read.address, read.count, read.unit_id)
            self._fail(read, info)
            return [read]
        await self._deliver(read, ts, response)
        return [read]

    async def _request(self, read: Read) -> tuple[int, ModbusPDU]:
        """(time sent, response) of ``read``; ConnectorError if the link is down."""
        async with self._lock:
            client = self._client
            if client is None or not client.connected:
                raise ConnectorError("connection closed by the device")
            ts = self.now_us()
            self.counters["requests"] += 1
            try:
                if read.kind == "holding":
                    rr = await client.read_holding_registers(
                        read.address, count=read.count, device_id=read.unit_id
                    )
                elif read.kind == "input":
                    rr = await client.read_input_registers(
                        read.address, count=read.count, device_id=read.unit_id
                    )
                elif read.kind == "coil":
                    rr = await client.read_coils(
                        read.address, count=read.count, device_id=read.unit_id
                    )
                else:
                    rr = await client.read_discrete_inputs(
                        read.address, count=read.count, device_id=read.unit_id
                    )
            except ModbusIOException:
                if not client.connected:  # pymodbus gave up on the link
                    raise ConnectorError("the device stopped answering") from None
                raise
            except ModbusException as exc:
                raise ConnectorError(f"Modbus: {exc}") from exc
        return ts, rr

    async def _deliver(self, read: Read, ts: int, response: ModbusPDU) -> None:
        bits = read.kind in BIT_KINDS
        data: Sequence[Any] = response.bits if bits else response.registers
        if len(data) < read.count:
            payload = bytes(int(b) for b in data) if bits else codec.words_to_bytes(data)
            await self._undecodable(
                read, payload, f"short response: {len(data)} of {read.count} values"
            )
            return
        for span in read.spans:
            ep, dtype = self._targets[span.key]
            off = span.address - read.address
            value: codec.Value
            if bits:
                value = bool(data[off])
            else:
                words = data[off : off + span.size]
                try:
                    value = self._decoders[span.key](words)
                except codec.CodecError as exc:
                    await self._bad(span, codec.words_to_bytes(words), f"{dtype}: {exc}")
                    continue
            self._bad_payload.pop(span.key, None)
            self.emit(ep, value, ts_us=ts)
            self.endpoint_state(ep, "running", "")

    async def _undecodable(self, read: Read, payload: bytes, reason: str) -> None:
        for span in read.spans:
            await self._bad(span, payload, reason)

    async def _bad(self, span: Span, payload: bytes, reason: str) -> None:
        """Registers that do not decode: dead-lettered once per distinct payload (a
        poll would otherwise repeat the same one every interval) and shown as status."""
        ep, _ = self._targets[span.key]
        text = f"cannot decode {where(span.kind, span.address, span.size, span.unit_id)}: {reason}"
        if self._bad_payload.get(span.key) != payload:
            self._bad_payload[span.key] = payload
            await self.dead_letter(payload, text, "DecodeError", key=ep.identity)
        self.endpoint_state(ep, "error", text)

    def _fail(self, read: Read, info: str) -> None:
        for span in read.spans:
            self.endpoint_state(self._targets[span.key][0], "error", info)

    def _where(self, read: Read) -> str:
        return where(read.kind, read.address, read.count, read.unit_id)

    # -- commands -----------------------------------------------------------------
    async def write(self, endpoint: EndpointBase, value: Any) -> None:
        """Holding registers: ``value`` encoded to the endpoint's type and orders and
        written with one Write Multiple Registers; coils: Write Single Coil."""
        target = next((t for t in self._targets.values() if t[0] is endpoint), None)
        if target is None:
            why = next((w for e, w in self._config_errors if e is endpoint), "unknown endpoint")
            raise ConnectorError(f"cannot write: {why}")
        ep, dtype = target
        unit = self.conf.unit_id if ep.unit_id is None else ep.unit_id
        try:
            words = codec.encode(value, dtype, ep.byte_order, ep.word_order, ep.length)
        except codec.CodecError as exc:
            raise ConnectorError(f"cannot write {value!r} as {dtype}: {exc}") from exc
        async with self._lock:
            client = self._client
            if client is None or not client.connected:
                raise ConnectorError("not connected")
            self.counters["requests"] += 1
            try:
                if ep.kind == "coil":
                    rr = await client.write_coil(ep.address, words[0] != 0, device_id=unit)
                elif ep.kind == "holding":
                    rr = await client.write_registers(ep.address, words, device_id=unit)
                else:
                    raise ConnectorError(f"{ep.kind} is read-only")
            except ModbusIOException as exc:
                raise ConnectorError(
                    f"no response within {self.conf.timeout_ms} ms to the write"
                ) from exc
            except ModbusException as exc:
                raise ConnectorError(f"Modbus: {exc}") from exc
        if rr.isError():
            count = 1 if ep.kind == "coil" else len(words)
            code = int(getattr(rr, "exception_code", 0))
            raise ConnectorError(exception_info(code, ep.kind, ep.address, count, unit))
