"""The processors every runtime runs, one per projected topic group."""

from __future__ import annotations

from pipeline.processors.alarms import AlarmProcessor
from pipeline.processors.audit import AuditProcessor
from pipeline.processors.base import Processor
from pipeline.processors.deadletter import DeadLetterProcessor
from pipeline.processors.identity import IdentityProcessor
from pipeline.processors.status import StatusProcessor
from pipeline.processors.telemetry import TelemetryProcessor


def processors() -> list[Processor]:
    """Fresh instances of every processor (they hold no state between batches)."""
    return [
        TelemetryProcessor(),
        IdentityProcessor(),
        DeadLetterProcessor(),
        AuditProcessor(),
        StatusProcessor(),
        AlarmProcessor(),
    ]
