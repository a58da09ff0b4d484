"""The OPC UA connector: subscriptions on an asyncua Client.

One subscription per distinct ``interval_ms`` of the endpoints (its publishing interval
and the sampling interval of its monitored items). Each data change becomes a reading
stamped with the value's source time (else the server time, else now) and its
StatusCode as quality, so a Bad value is reported, not hidden. Deadbands are applied
by the server as a DataChangeFilter, which saves the network the suppressed changes.

asyncua's own reconnect is off: the base class reconnects with backoff and reports
status, and a fresh connect() creates new subscriptions. The base class drops the
initial values a new subscription re-sends (their source time does not advance), so
a reconnect duplicates nothing. The session is lost when asyncua's watchdog probe
fails (``watchdog_interval_ms``), the socket closes, or the server ends a
subscription; serve() then raises with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, cast

from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent, Subscription

from millrace.connectors._common.base import ProtocolConnector, describe
from millrace.connectors._common.models import EndpointBase
from millrace.pipeline.errors import ConnectorError

from .client import close_quietly, connect_error, make_client
from .config import OpcuaConnection, OpcuaEndpoint, parse_node_ref
from .values import (
    DATA_TYPES,
    WriteError,
    coerce,
    infer_variant_type,
    quality,
    source_time_us,
    status_name,
    telemetry_value,
)

log = logging.getLogger("millrace.connectors.opcua")

# the server cannot filter this node: subscribe without the deadband
_FILTER_CODES = {
    "BadFilterNotAllowed",
    "BadMonitoredItemFilterUnsupported",
    "BadMonitoredItemFilterInvalid",
    "BadDeadbandFilterInvalid",
}
KEEPALIVE_MS = 5000  # an idle subscription still publishes this often
PER_CALL = 500  # monitored items / browse paths per request (servers cap them)


class OpcuaConnector(ProtocolConnector):
    """Monitors the endpoints' nodes of one OPC UA server (see the module doc)."""

    protocol = "opcua"
    client_deadband = False  # a server-side DataChangeFilter

    connection: OpcuaConnection
    endpoints: list[OpcuaEndpoint]  # type: ignore[assignment]

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._client: Client | None = None
        self._subs: list[tuple[Subscription, dict[int, OpcuaEndpoint]]] = []
        self._nodes: dict[tuple[str, str], Node] = {}
        self._vtypes: dict[str, ua.VariantType] = {}  # node id -> type written (kept)
        self._lost = asyncio.Event()
        self._lost_reason = ""

    # -- session ----------------------------------------------------------------------
    async def connect(self) -> None:
        conn = self.connection
        self._lost.clear()
        self._lost_reason = ""
        try:
            client = await make_client(conn)
        except Exception as exc:
            raise connect_error(exc, conn) from exc
        self._client = client
        client.connection_lost_callback = self._on_connection_lost
        try:
            await client.connect()
            await self._subscribe(client)
        except Exception as exc:
            raise connect_error(exc, conn) from exc

    async def serve(self) -> None:
        tasks = [
            asyncio.create_task(self._drain(sub, handles), name=f"{self.resource_id}-sub")
            for sub, handles in self._subs
        ]
        lost = asyncio.create_task(self._lost.wait())
        try:
            done, _ = await asyncio.wait([lost, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not lost and not t.cancelled() and t.exception() is not None:
                    exc = t.exception()
                    log.error("%s: subscription reader failed", self.resource_id, exc_info=exc)
                    self._lose(f"subscription reader failed: {describe(cast(Exception, exc))}")
        finally:
            for t in (lost, *tasks):
                t.cancel()
            await asyncio.gather(lost, *tasks, return_exceptions=True)
        raise ConnectorError(self._lost_reason or "connection closed")

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        self._subs = []
        if client is None:
            return
        client.connection_lost_callback = None
        await close_quietly(client, self.connection.timeout_ms / 1000)

    def _lose(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    async def _on_connection_lost(self, exc: Exception) -> None:
        """asyncua's supervisor saw the session die (probe failed or socket closed)."""
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            reason = (
                "the server did not answer the watchdog probe within "
                f"{self.connection.watchdog_interval_ms / 1000:g} s"
            )
        elif isinstance(exc, ConnectionError):
            reason = "the server closed the connection"
        elif isinstance(exc, ua.UaStatusCodeError):
            reason = f"the server answered the watchdog probe with {status_name(exc.code)}"
        else:
            reason = describe(exc)
        self._lose(reason)

    # -- subscriptions ----------------------------------------------------------------
    async def _resolve(self, client: Client) -> None:
        """Node ids become Nodes; browse paths are translated in one request."""
        self._nodes = {}
        ns_array: list[str] | None = None
        paths: list[tuple[OpcuaEndpoint, str]] = []
        for ep in self.endpoints:
            ref = parse_node_ref(ep.node_id)
            key = (ep.identity, ep.signal)
            if ref.kind == "path":
                paths.append((ep, ref.relative_path()))
                continue
            ns = ref.namespace
            if ref.namespace_uri is not None:
                if ns_array is None:
                    ns_array = list(await client.get_namespace_array())
                if ref.namespace_uri not in ns_array:
                    self.endpoint_state(
                        ep, "error", f"namespace {ref.namespace_uri} is not on the server"
                    )
                    continue
                ns = ns_array.index(ref.namespace_uri)
            self._nodes[key] = client.get_node(ua.NodeId.from_string(ref.node_id_text(ns)))
        found: list[list[Node | None] | None] = []
        for i in range(0, len(paths), PER_CALL):
            found += await client.nodes.objects.get_children_by_path(
                [p for _, p in paths[i : i + PER_CALL]], raise_on_partial_error=False
            )
        for (ep, _), targets in zip(paths, found, strict=True):
            if not targets or targets[0] is None:
                self.endpoint_state(
                    ep, "error", f"browse path {ep.node_id} not found under Objects"
                )
                continue
            self._nodes[(ep.identity, ep.signal)] = targets[0]

    async def _subscribe(self, client: Client) -> None:
        await self._resolve(client)
        self._subs = []
        groups: dict[int, list[OpcuaEndpoint]] = {}
        for ep in self.endpoints:
            if (ep.identity, ep.signal) in self._nodes:
                groups.setdefault(ep.interval_ms, []).append(ep)
        for interval, eps in sorted(groups.items()):
            keepalive = max(1, math.ceil(KEEPALIVE_MS / interval))
            params = ua.CreateSubscriptionParameters(
                RequestedPublishingInterval=float(interval),
                RequestedLifetimeCount=max(3 * keepalive, math.ceil(60_000 / interval)),
                RequestedMaxKeepAliveCount=keepalive,
                MaxNotificationsPerPublish=10_000,
                PublishingEnabled=True,
                Priority=0,
            )
            # iterator mode with an unbounded queue: nothing is dropped client-side,
            # and no task is spawned per notification (the handler mode does that)
            sub = await client.create_subscription(params, None, queue_maxsize=0)
            handles = dict(enumerate(eps, start=1))
            retry = await self._monitor(sub, handles, filtered=True)
            if retry:
                again = await self._monitor(sub, retry, filtered=False)
                for h in retry:
                    if h not in again:
                        self.endpoint_state(
                            handles[h],
                            "running",
                            "the server cannot apply the deadband to this node; "
                            "every change is reported",
                        )
                for h in again:
                    handles.pop(h)
            self._subs.append((sub, handles))

    async def _monitor(
        self, sub: Subscription, handles: dict[int, OpcuaEndpoint], *, filtered: bool
    ) -> dict[int, OpcuaEndpoint]:
        """Create the monitored items; failed ones are reported (and left out of
        ``handles`` by the caller). Returns those to retry without a filter."""
        items = list(handles.items())
        results: list[int | ua.StatusCode] = []
        for i in range(0, len(items), PER_CALL):  # servers limit the items per call
            results += await sub.create_monitored_items(
                [
                    self._item(h, ep, filtered and ep.deadband > 0)
                    for h, ep in items[i : i + PER_CALL]
                ]
            )
        retry: dict[int, OpcuaEndpoint] = {}
        for (h, ep), res in zip(items, results, strict=True):
            if not isinstance(res, ua.StatusCode):
                if filtered:
                    self.endpoint_state(ep, "running", "")
                continue
            name = status_name(res.value)
            if filtered and ep.deadband > 0 and name in _FILTER_CODES:
                retry[h] = ep
                continue
            self.endpoint_state(ep, "error", f"cannot monitor {ep.node_id}: {name}")
            if filtered:
                handles.pop(h)
            else:
                retry[h] = ep  # the caller drops these
        return retry

    def _item(
        self, handle: int, ep: OpcuaEndpoint, filtered: bool
    ) -> ua.MonitoredItemCreateRequest:
        params = ua.MonitoringParameters(
            ClientHandle=handle,
            SamplingInterval=float(ep.interval_ms),
            QueueSize=self.connection.queue_size,
            DiscardOldest=True,
        )
        if filtered:
            # the deadband is in the endpoint's (scaled) units; the server sees raw ones
            raw = ep.deadband / abs(ep.scale) if ep.scale else ep.deadband
            params.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=ua.DeadbandType.Absolute,
                DeadbandValue=raw,
            )
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(
                NodeId=self._nodes[(ep.identity, ep.signal)].nodeid,
                AttributeId=ua.AttributeIds.Value,
            ),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=params,
        )

    async def _drain(self, sub: Subscription, handles: dict[int, OpcuaEndpoint]) -> None:
        async for ev in sub:
            if isinstance(ev, DataChangeEvent):
                item = ev.data.monitored_item
                ep = handles.get(item.ClientHandle)
                if ep is not None:
                    error = self._on_change(ep, ev.value, item.Value)
                    if error is not None:
                        await self.dead_letter(
                            repr(ev.value).encode()[:4096],
                            f"{ep.node_id}: value not convertible: {error}",
                            "ValueError",
                            key=ep.identity,
                        )
            elif isinstance(ev, StatusChangeEvent):
                code = ev.notification.Status.value if ev.notification.Status else 0
                if quality(code) < 0:
                    self._lose(f"the server ended the subscription ({status_name(code)})")
                    return
        self._lose("the subscription was closed")

    def _on_change(self, ep: OpcuaEndpoint, value: Any, dv: ua.DataValue | None) -> str | None:
        """Emit one data change; the reason when its value cannot be converted."""
        try:
            converted = telemetry_value(value)
        except Exception as exc:  # a value type nobody foresaw: dead letter, go on
            return describe(exc)
        if dv is None:
            self.emit(ep, converted)
            return None
        ts = source_time_us(dv)
        code = dv.StatusCode.value if dv.StatusCode is not None else 0
        self.emit(ep, converted, ts, quality(code))
        return None

    # -- commands ---------------------------------------------------------------------
    async def write(self, endpoint: EndpointBase, value: Any) -> None:
        ep = cast(OpcuaEndpoint, endpoint)
        client = self._client
        if client is None or not self.connected:
            raise ConnectorError("not connected to the OPC UA server")
        node = self._nodes.get((ep.identity, ep.signal))
        if node is None:
            raise ConnectorError(f"node {ep.node_id} was not found on the server")
        vtype = await self._variant_type(ep, node, value)
        try:
            variant = ua.Variant(coerce(value, vtype), vtype)
        except WriteError as exc:
            raise ConnectorError(f"cannot write to {ep.node_id} ({vtype.name}): {exc}") from exc
        try:
            # no timestamps: many servers refuse writes that carry them
            await node.write_attribute(ua.AttributeIds.Value, ua.DataValue(variant))
        except ua.UaStatusCodeError as exc:
            raise ConnectorError(
                f"the server refused the write to {ep.node_id}: {status_name(exc.code)}"
            ) from exc

    async def _variant_type(self, ep: OpcuaEndpoint, node: Node, value: Any) -> ua.VariantType:
        """The variant type written to ``node``: the endpoint's data_type, else the
        node's DataType (read once), else the type of its current value."""
        if ep.data_type != "auto":
            return DATA_TYPES[ep.data_type]
        key = node.nodeid.to_string()
        vtype = self._vtypes.get(key)
        if vtype is not None:
            return vtype
        try:
            vtype = await node.read_data_type_as_variant_type()
            if vtype == ua.VariantType.Variant:  # BaseDataType, Number, Integer...
                dv = await node.read_data_value(raise_on_bad_status=False)
                current = dv.Value.VariantType if dv.Value is not None else None
                if current is None or current == ua.VariantType.Null:
                    return infer_variant_type(value)  # not cached: the next may differ
                vtype = current
        except ua.UaStatusCodeError as exc:
            raise ConnectorError(
                f"cannot read the data type of {ep.node_id}: {status_name(exc.code)}"
            ) from exc
        except ua.UaError as exc:
            raise ConnectorError(f"cannot read the data type of {ep.node_id}: {exc}") from exc
        self._vtypes[key] = vtype
        return vtype
