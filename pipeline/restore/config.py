"""The ``restore:`` section of the configuration file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RestoreConfig(BaseModel):
    """Which URLs a restore by URL may read, and how it folds.

    Paths on the archive store (``archive.url``) are always allowed; a ``file://``,
    ``http(s)://`` or ``s3://`` URL must start with one of ``allowed_url_prefixes``
    (empty: none), anything else is refused (403)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_url_prefixes: list[str] = Field(
        default_factory=list,
        description="URL prefixes a restore by URL may read, e.g. s3://bucket/exports/",
    )
    chunk_records: int = Field(
        20_000, ge=1, description="records per projection write (one sink batch)"
    )
