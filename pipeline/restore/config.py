"""The ``restore:`` section of the configuration file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from millrace.pipeline.restore.errors import RestoreError
from millrace.pipeline.restore.urls import check_credentials


class RestoreConfig(BaseModel):
    """Which URLs a restore by URL may read, and how it folds.

    Paths on the archive store (``archive.url``) are always allowed; a ``file://``,
    ``http(s)://`` or ``s3://`` URL must start with one of ``allowed_url_prefixes``
    (empty: none), anything else is refused (403). An http(s) prefix may declare the
    credentials of the URLs below it as ``${ENV}`` references
    (``https://${ARCHIVE_USER}:${ARCHIVE_PASSWORD}@host/exports/``), resolved by the
    task runner from its environment; a literal password is refused here too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_url_prefixes: list[str] = Field(
        default_factory=list,
        description="URL prefixes a restore by URL may read, e.g. s3://bucket/exports/ or "
        "https://${ARCHIVE_USER}:${ARCHIVE_PASSWORD}@files.example.com/exports/",
    )
    chunk_records: int = Field(
        20_000, ge=1, description="records per projection write (one sink batch)"
    )
    worker: bool = Field(
        True,
        description="fold the archive store's files in worker processes (restore.offload): "
        "decode and fold beside the inserts, on a second core; false: in the engine's process",
    )

    @field_validator("allowed_url_prefixes")
    @classmethod
    def _no_secrets(cls, prefixes: list[str]) -> list[str]:
        for i, prefix in enumerate(prefixes):
            try:
                check_credentials(prefix, f"allowed_url_prefixes[{i}]")
            except RestoreError as exc:
                raise ValueError(str(exc)) from None
        return prefixes
