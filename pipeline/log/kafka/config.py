"""Configuration of the Kafka event log."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class KafkaLogConfig(BaseModel):
    """Settings of :class:`~millrace.pipeline.log.kafka.KafkaEventLog`.

    ``partitions`` and ``replication_factor`` are what :func:`~millrace.pipeline.log.kafka.admin.
    ensure_topics` creates topics with; the log itself reads partition counts from the
    cluster.  Every millrace topic name is prefixed with ``topic_prefix`` on the wire, so
    several deployments (or tests) can share one cluster.  Secrets are ``SecretStr`` and
    never appear in ``repr`` or logs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str | list[str] = Field(min_length=1, description="host:port[,...]")
    client_id: str = "millrace"
    partitions: int = Field(default=4, ge=1, description="partitions of a new topic")
    replication_factor: int = Field(default=1, ge=1, description="replicas of a new topic")
    acks: Literal["all", 0, 1] = "all"
    enable_idempotence: bool = True
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    request_timeout_ms: int = Field(default=30_000, ge=1)
    topic_prefix: str = ""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaLogConfig:
        if self.enable_idempotence and self.acks != "all":
            raise ValueError("enable_idempotence requires acks='all'")
        if self.security_protocol.startswith("SASL") and (
            self.sasl_username is None or self.sasl_password is None
        ):
            raise ValueError(f"{self.security_protocol} needs sasl_username and sasl_password")
        return self

    def topic(self, name: str) -> str:
        """The Kafka topic that carries millrace topic ``name``."""
        return self.topic_prefix + name

    def client_kwargs(self) -> dict[str, Any]:
        """Connection settings shared by aiokafka producers and consumers."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None  # checked by _consistent
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        return kwargs
