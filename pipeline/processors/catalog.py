"""The processors every runtime runs, one per projected topic group."""

from __future__ import annotations

from millrace.pipeline.batch_ledger import DEFAULT_FILTER_BYTES
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


def processors(
    batch_window_us: int = DEFAULT_WINDOW_US, batch_filter_bytes: int = DEFAULT_FILTER_BYTES
) -> list[Processor]:
    """Fresh instances of every processor (they hold no state between batches but
    caches of what they read back; ``batch_window_us``: how long the telemetry fold
    applies a batch id once, ``pipeline.batches``; ``batch_filter_bytes``: the memory
    of its ids per partition, ``pipeline.batch_ledger``)."""
    return [
        TelemetryProcessor(window_us=batch_window_us, filter_bytes=batch_filter_bytes),
        IdentityProcessor(),
        DeadLetterProcessor(),
        AuditProcessor(),
        StatusProcessor(),
        AlarmProcessor(),
        TaskProcessor(),
        ServiceProcessor(),
    ]
