"""Configuration of the MQTT connector: a broker connection and topic endpoints.

These models are imported to validate commissioning files, so they never import the
MQTT client library. Syntax of topic filters, ``{N}`` topic-level templates and JSON
paths: :mod:`millrace.connectors.mqtt.topics`, :mod:`millrace.connectors.mqtt.jsonpath` (and
README.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from millrace.connectors._common.models import ConnectionBase, EndpointBase, Strict

from .jsonpath import path_problem
from .payload import TimestampFormat
from .topics import filter_problem


class MqttTls(Strict):
    """TLS to the broker. The server certificate is always verified: against
    ``ca_file`` when given, else the system's trusted CAs."""

    ca_file: str | None = Field(
        None, description="PEM file of the CA(s) that signed the broker's certificate."
    )
    cert_file: str | None = Field(
        None, description="PEM client certificate, for brokers that require one."
    )
    key_file: str | None = Field(
        None, description="PEM private key of cert_file (omit if cert_file holds it)."
    )
    insecure: bool = Field(
        False,
        description="Do not check that the certificate names the host (the certificate "
        "chain is still verified). For brokers reached by an address their certificate "
        "does not list.",
    )


class MqttConnection(ConnectionBase):
    """An MQTT 3.1.1 broker the connector subscribes to (and publishes commands to)."""

    protocol: Literal["mqtt"]
    host: str = Field(min_length=1, description="Broker host name or IP address.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Broker port; default 1883, or 8883 with tls."
    )
    client_id: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="MQTT client id; required with clean_session false. Default: random.",
    )
    username: str | None = Field(None, min_length=1)
    password: SecretStr | None = Field(
        None, description="Use an environment reference: ${MQTT_PASSWORD}."
    )
    tls: MqttTls | None = Field(None, description="Connect with TLS (mqtts).")
    keepalive: int = Field(
        60,
        ge=5,
        le=65535,
        description="Keep-alive interval in seconds; a broker that stops answering is "
        "noticed within about twice this.",
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Wait this long for the broker's CONNACK/SUBACK."
    )
    clean_session: bool = Field(
        True,
        description="false: the broker keeps the subscriptions and queues QoS 1 messages "
        "while the connector is away (needs a fixed client_id).",
    )
    command_topic: str | None = Field(
        None,
        description="Topic template commands are published to (QoS 1), with {identity} "
        "and {signal}, e.g. plant/{identity}/set/{signal}. Needed for writable endpoints.",
    )
    command_format: Literal["json", "plain"] = Field(
        "json",
        description='json: {"value": v, "identity": ..., "signal": ..., "ts_us": ...}; '
        "plain: the bare value (21.5, true, text).",
    )

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8883 if self.tls is not None else 1883


class MqttEndpoint(EndpointBase):
    """One signal carried by the messages of a topic filter.

    ``identity`` and ``signal`` may take topic levels: ``{1}`` is the second level of
    the topic the message arrived on, ``{-1}`` the last (see :mod:`.topics`)."""

    topic: str = Field(description="Topic filter to subscribe to; wildcards + and #.")
    qos: Literal[0, 1] = Field(1, description="QoS of the subscription.")
    value_path: str | None = Field(
        None,
        description="JSON path of the value in the payload ($.value); default: the whole "
        "payload, which may be a bare number, true/false or text.",
    )
    timestamp_path: str | None = Field(
        None, description="JSON path of the source time; default: the time of receipt."
    )
    timestamp_format: TimestampFormat = Field(
        "epoch_ms", description="epoch_s, epoch_ms, epoch_us (numbers) or iso8601 (text)."
    )

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        problem = filter_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @field_validator("value_path", "timestamp_path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None:
            problem = path_problem(v)
            if problem is not None:
                raise ValueError(problem)
        return v
