"""The ``archive:`` section of the configuration file (or ``MILLRACE_ARCHIVE_URL``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from millrace.pipeline.archive.layout import parse_window


class ArchiveConfig(BaseModel):
    """Where and how the archiver writes; no ``url``: no archive (and no archiver).

    ``storage_options`` go to the fsspec filesystem as they are (for ``s3://``:
    ``endpoint_url``, ``key``, ``secret``, ``client_kwargs``, ... as s3fs takes them);
    absent, s3fs reads the environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(None, description="a local directory or an fsspec URL (s3://...)")
    window: str = Field("1h", description="one file per topic-partition and window")
    codec: Literal["zstandard", "deflate"] = "zstandard"
    storage_options: dict[str, Any] = Field(default_factory=dict)
    idle_close_s: float = Field(
        300.0,
        ge=0,
        description="an open window of a partition with no newer record is closed this "
        "long after its end (so a quiet partition's segments can be retired)",
    )
    poll_ms: int = Field(1000, ge=10, description="how often the archiver looks for records")
    retry_max_s: float = Field(60.0, gt=0, description="longest backoff when the store fails")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)  # ValueError: pydantic reports it at $.archive.window
        return value

    @property
    def window_us(self) -> int:
        return parse_window(self.window)

    @property
    def enabled(self) -> bool:
        return bool(self.url)
