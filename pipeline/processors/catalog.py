"""The processors every runtime runs, one per projected topic group."""

from __future__ import annotations

from millrace.pipeline.batches import DEFAULT_WINDOW_US
from millrace.pipeline.processors.alarms import AlarmProcessor
from millrace.pipeline.processors.audit import AuditProcessor
from millrace.pipeline.processors.base import Processor
from millrace.pipeline.processors.deadletter import DeadLetterProcessor
from millrace.pipeline.processors.identity import IdentityProcessor
from millrace.pipeline.processors.services import ServiceProcessor
from millrace.pipeline.processors.status import StatusProcessor
from millrace.pipeline.processors.tasks import TaskProcessor
from millrace.pipeline.processors.telemetry import TelemetryProcessor


def processors(batch_window_us: int = DEFAULT_WINDOW_US) -> list[Processor]:
    """Fresh instances of every processor (they hold no state between batches but
    caches of what they read back; ``batch_window_us``: how long the telemetry fold
    applies a batch id once, ``pipeline.batches``)."""
    return [
        TelemetryProcessor(window_us=batch_window_us),
        IdentityProcessor(),
        DeadLetterProcessor(),
        AuditProcessor(),
        StatusProcessor(),
        AlarmProcessor(),
        TaskProcessor(),
        ServiceProcessor(),
    ]
