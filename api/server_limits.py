"""The API server's connection and timing limits, as configured (``api.server``).

Apart from ``api.server`` so that reading a configuration file does not import the
server.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServerLimits(BaseModel):
    """Connection and timing limits of the API server (``api.server`` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="request line and headers")
    header_timeout_s: float = Field(10.0, gt=0, description="to complete the request headers")
    body_timeout_s: float = Field(30.0, gt=0, description="a request body arriving, idle")
    keep_alive_timeout_s: int = Field(5, ge=1, description="idle between requests")
    linger_bytes: int = Field(
        1024 * 1024, ge=0, description="discarded after an early answer, before closing"
    )
    linger_s: float = Field(5.0, gt=0, description="the same, in time")
    max_connections: int = Field(
        8192, ge=1, description="open at once; lowered to fit the file descriptor limit"
    )
    max_connections_per_client: int = Field(1024, ge=1, description="per client address")
    limit_concurrency: int = Field(
        4096, ge=1, description="requests in flight or connections before 503"
    )
    log_interval_s: float = Field(10.0, gt=0, description="repeated messages, at most once")
