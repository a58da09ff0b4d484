"""``runtime.worker``'s configuration model, apart from the worker (``runtime.worker``,
which loads pyarrow): every command builds the configuration models, few run a fold."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from millrace.pipeline.topics import TELEMETRY

__all__ = ["WorkerConfig"]


class WorkerConfig(BaseModel):
    """``runtime.worker``: decode and fold in a child process (see ``runtime.worker``)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="fold the topics below in a worker process")
    topics: list[str] = Field(
        default_factory=lambda: [TELEMETRY],
        description="topics whose records the worker decodes and folds (stateless folds)",
    )
