"""The MQTT connector: aiomqtt (paho-mqtt underneath) subscribed to a broker.

:meth:`MqttConnector.connect` opens the session and subscribes to every endpoint and
mapping topic filter with its QoS, each time: after a broker restart (or with a clean
session) the broker has forgotten them. :meth:`serve` maps each message to readings;
a payload that cannot be used becomes a dead letter keyed by its topic and the next
message is read. When the broker connection drops, ``serve`` raises and the base class
reconnects with backoff and reports the gap.

Message routing: a message goes to every endpoint and mapping whose filter matches its
topic (the broker delivers it once even when several subscriptions match it, as
Mosquitto does by default; MQTT 3.1.1 lets other brokers deliver it once per matching
subscription, so overlapping filters on those brokers may repeat a reading).

The configuration as topic routes and subscriptions is :mod:`.routes`; what a failed
session means in words (a refused CONNACK, a TLS handshake, a timeout) and the TLS
context are :mod:`.session`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_LOG_ERR
from paho.mqtt.reasoncodes import ReasonCode

from millrace.connectors._common.base import ProtocolConnector
from millrace.connectors._common.models import ConnectionBase, EndpointBase, MappingConfig
from millrace.pipeline.batches import mqtt_batch_id
from millrace.pipeline.errors import ConnectorError

from .config import MqttConnection, MqttEndpoint
from .payload import (
    MAX_IDENTITY,
    DecodeError,
    command_payload,
    endpoint_reading,
    mapping_readings,
)
from .routes import EndpointRoute, MappingRoute, Routes
from .session import connect_failure, refusal, tls_context
from .topics import (
    TopicError,
    command_topic,
    render,
)

log = logging.getLogger("millrace.connectors.mqtt")


class MqttConnector(ProtocolConnector):
    """Subscribes to a broker; endpoints and payload mappings become readings."""

    protocol = "mqtt"
    connection: MqttConnection

    def __init__(
        self,
        name: str,
        connection: ConnectionBase,
        endpoints: Sequence[EndpointBase] = (),
        mappings: Sequence[MappingConfig] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(name, connection, endpoints, mappings, **kwargs)
        self._client: aiomqtt.Client | None = None
        self._entered = False
        self._paho_error = ""
        self._routes = Routes()
        self._concrete: dict[tuple[int, str, str], MqttEndpoint] = {}
        self.counters.update(messages=0.0, unmatched_messages=0.0)
        if not isinstance(connection, MqttConnection):
            self._routes.problems.append(f"connection is {type(connection).__name__}, not mqtt")
        for ep in self.endpoints:
            self._routes.add_endpoint(ep)
        for i, m in enumerate(self.mappings):
            if m.topic is not None:
                self._routes.add_mapping(i, m)

    # -- session ------------------------------------------------------------------------
    async def connect(self) -> None:
        if self._routes.problems:
            raise ConnectorError("invalid configuration: " + "; ".join(self._routes.problems))
        c = self.connection
        try:
            client = aiomqtt.Client(
                c.host,
                c.effective_port,
                username=c.username,
                password=c.password.get_secret_value() if c.password is not None else None,
                identifier=c.client_id,
                clean_session=c.clean_session,
                keepalive=c.keepalive,
                timeout=c.connect_timeout_s,
                tls_context=tls_context(c.tls) if c.tls is not None else None,
                logger=log,
            )
        except ValueError as exc:  # paho rejects the settings
            raise ConnectorError(f"invalid MQTT settings: {exc}") from exc
        self._client = client  # disconnect() cleans up even a half-open attempt
        closed = self._watch(client)
        enter = asyncio.ensure_future(client.__aenter__())
        watch = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait({enter, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not enter.done():
                # paho saw the connection close before a CONNACK (which aiomqtt would
                # only notice at the timeout): a TLS port that wants a client
                # certificate, a plain client on a TLS port, a broker at its limit
                await asyncio.wait({enter}, timeout=0.2)  # a refusal arrives first
            if not enter.done():
                enter.cancel()
                detail = f": {self._paho_error}" if self._paho_error else ""
                if c.tls is not None and not c.tls.cert_file and "certificate" not in detail:
                    # TLS 1.3: the broker's "certificate required" alert comes after the
                    # client's handshake ends; when the broker closes first, the client
                    # reads an EOF instead of the alert
                    detail += (
                        " (a broker that requires a client certificate closes like this:"
                        " set tls.cert_file and tls.key_file)"
                    )
                raise ConnectorError(
                    f"the broker closed the connection before accepting it{detail}"
                )
            enter.result()
        except MqttConnectError as exc:
            raise ConnectorError(refusal(exc)) from exc
        except aiomqtt.MqttError as exc:
            raise connect_failure(exc, c.connect_timeout_s) from exc
        finally:
            watch.cancel()
            if not enter.done():
                enter.cancel()
            await asyncio.gather(enter, watch, return_exceptions=True)
        self._entered = True
        await self._subscribe(client)

    def _watch(self, client: aiomqtt.Client) -> asyncio.Event:
        """An event set when paho closes the connection, and the last error paho logs
        (its words for a failed read or write) kept for the status info."""
        paho = client._client
        loop = asyncio.get_running_loop()
        closed = asyncio.Event()
        aiomqtt_on_disconnect = paho.on_disconnect
        self._paho_error = ""

        def on_disconnect(*args: Any) -> None:
            loop.call_soon_threadsafe(closed.set)
            if aiomqtt_on_disconnect is not None:
                aiomqtt_on_disconnect(*args)

        def on_log(_client: Any, _userdata: Any, level: int, buf: str) -> None:
            if level == MQTT_LOG_ERR:
                self._paho_error = buf

        paho.on_disconnect = on_disconnect
        paho.on_log = on_log
        return closed

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        subs = list(self._routes.subscriptions.items())
        if not subs:
            return
        try:
            granted = await client.subscribe(subs)
        except aiomqtt.MqttError as exc:
            raise ConnectorError(f"subscribe failed: {exc}") from exc
        codes: list[object] = list(granted)
        for (topic_filter, _), code in zip(subs, codes, strict=False):
            if isinstance(code, ReasonCode):
                failed = code.is_failure
            else:
                failed = isinstance(code, int) and code >= 0x80
            info = f"subscription to {topic_filter!r} refused by the broker: {code}"
            if failed:
                log.warning("%s: %s", self.resource_id, info)
            for ep in self._routes.filter_endpoints.get(topic_filter, ()):
                if failed:
                    self.endpoint_state(ep, "error", info)
                else:
                    self.endpoint_state(ep, "running", "")

    async def serve(self) -> None:
        client = self._client
        if client is None:
            raise ConnectorError("not connected")
        try:
            async for message in client.messages:
                payload = message.payload
                if not isinstance(payload, bytes):
                    payload = str(payload).encode() if payload is not None else b""
                # QoS 0 is never redelivered (and its packet id is always 0)
                mid = message.mid if message.qos > 0 else None
                await self._handle(message.topic.value, payload, mid)
        except aiomqtt.MqttError as exc:
            cause = exc.__cause__
            detail = str(cause) if cause is not None else str(exc)
            if self._paho_error:
                detail += f"; {self._paho_error}"
            raise ConnectorError(f"broker connection lost ({detail})") from exc

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        entered, self._entered = self._entered, False
        if client is None:
            return
        try:
            if entered:
                await asyncio.wait_for(
                    client.__aexit__(None, None, None), self.connection.connect_timeout_s
                )
        except Exception:
            log.debug("%s: MQTT disconnect failed", self.resource_id, exc_info=True)
        finally:
            # aiomqtt leaves paho's socket open when the broker never answered the
            # CONNECT (timeout) or the session broke: close it so no descriptor leaks.
            try:
                client._client._reset_sockets()
            except Exception:  # pragma: no cover - private API of paho changed
                log.debug("%s: closing the MQTT socket failed", self.resource_id, exc_info=True)

    # -- messages -------------------------------------------------------------------------
    async def _handle(self, topic: str, payload: bytes, mid: int | None = None) -> None:
        """Readings of one message, for every endpoint and mapping it matches.

        A QoS 1/2 message (``mid``: its packet id) puts its readings of each identity
        in a batch whose id is derived from (connection, identity, topic, payload,
        packet id): a broker redelivers an unacknowledged message (DUP) with the same
        packet id, so the redelivery has the id the first delivery's batch had and the
        telemetry fold applies it once (``pipeline.batches.mqtt_batch_id``). Two
        different messages share an id only with the same payload and the same packet
        id within the window; a payload with its own timestamp then names the same
        readings anyway."""
        self.counters["messages"] += 1
        routes = self._routes.router.lookup(topic)
        if not routes:
            # e.g. a subscription a persistent session kept from an older configuration
            self.counters["unmatched_messages"] += 1
            return
        levels = topic.split("/")
        for route in routes:
            if isinstance(route, EndpointRoute):
                await self._endpoint_message(route, topic, levels, payload, mid)
            else:
                await self._mapping_message(route, topic, levels, payload, mid)

    def _batch_id(self, identity: str, topic: str, payload: bytes, mid: int | None) -> str | None:
        if mid is None:
            return None
        return mqtt_batch_id(self.resource_id, identity, topic, payload, mid)

    async def _endpoint_message(
        self,
        route: EndpointRoute,
        topic: str,
        levels: list[str],
        payload: bytes,
        mid: int | None = None,
    ) -> None:
        ep = route.endpoint
        try:
            value, ts = endpoint_reading(payload, route.spec)
            if route.templated:
                ep = self._concrete_endpoint(
                    ep, _name(render(ep.identity, levels)), _name(render(ep.signal, levels))
                )
        except (DecodeError, TopicError) as exc:
            await self.dead_letter(payload, f"{route.label}: {exc}", "DecodeError", key=topic)
            return
        self.emit(ep, value, ts, batch_id=self._batch_id(ep.identity, topic, payload, mid))

    async def _mapping_message(
        self,
        route: MappingRoute,
        topic: str,
        levels: list[str],
        payload: bytes,
        mid: int | None = None,
    ) -> None:
        m = route.mapping
        try:
            result = mapping_readings(payload, route.spec)
            identity = result.identity or _name(render(m.identity, levels))
            values = [(_name(render(s, levels)), v) for s, v in result.values]
        except (DecodeError, TopicError) as exc:
            await self.dead_letter(payload, f"{route.label}: {exc}", "DecodeError", key=topic)
            return
        scaled = m.scale != 1.0 or m.offset != 0.0
        batch_id = self._batch_id(identity, topic, payload, mid)
        for signal, value in values:
            if scaled and isinstance(value, int | float) and not isinstance(value, bool):
                value = value * m.scale + m.offset
            self.emit_reading(identity, signal, value, result.ts_us, batch_id=batch_id)
        if result.errors:
            await self.dead_letter(
                payload, f"{route.label}: " + "; ".join(result.errors), "DecodeError", key=topic
            )

    def _concrete_endpoint(self, ep: MqttEndpoint, identity: str, signal: str) -> MqttEndpoint:
        """A templated endpoint with the identity/signal of one topic (cached)."""
        key = (id(ep), identity, signal)
        found = self._concrete.get(key)
        if found is None:
            found = ep.model_copy(update={"identity": identity, "signal": signal})
            self._concrete[key] = found
        return found

    # -- commands -------------------------------------------------------------------------
    def handles(self, identity: str, signal: str) -> bool:
        return super().handles(identity, signal) or (
            self._routes.writable_template(identity, signal) is not None
        )

    async def execute(self, command: dict[str, Any]) -> None:
        """As the base, and a command for a templated endpoint (identity ``{1}``) is
        written to the identity/signal it names when the template can produce them."""
        key = (command["identity"], command["resource"])
        if key not in self._by_key:
            ep = self._routes.writable_template(*key)
            if ep is not None:
                self._by_key[key] = self._concrete_endpoint(ep, *key)
        await super().execute(command)

    async def write(self, endpoint: EndpointBase, value: Any) -> None:
        """Publish ``value`` to the command topic with QoS 1 (returns on PUBACK)."""
        c = self.connection
        client = self._client
        if client is None or not self.connected:
            raise ConnectorError("not connected to the broker")
        if c.command_topic is None:
            raise ConnectorError(f"connection {self.name} has no command_topic")
        try:
            topic = command_topic(c.command_topic, endpoint.identity, endpoint.signal)
            payload = command_payload(
                value,
                c.command_format,
                endpoint.data_type,
                endpoint.identity,
                endpoint.signal,
                self.now_us(),
            )
        except (TopicError, DecodeError) as exc:
            raise ConnectorError(
                f"cannot write {endpoint.identity}/{endpoint.signal}: {exc}"
            ) from exc
        try:
            await client.publish(topic, payload, qos=1)
        except aiomqtt.MqttError as exc:
            raise ConnectorError(f"publish to {topic!r} failed: {exc}") from exc


def _name(text: str) -> str:
    """An identity or signal taken from a topic or payload, checked like the models."""
    if not 0 < len(text) <= MAX_IDENTITY:
        raise TopicError(f"identity/signal {text[:40]!r} must be 1-{MAX_IDENTITY} characters")
    return text
