"""Event log port and adapters: ``local`` (embedded segment log), ``memory`` (tests),
``kafka`` (distributed)."""

from millrace.pipeline.log.base import (
    AppendResult,
    EventLog,
    Message,
    Record,
    TopicPartition,
    partition_for,
)

__all__ = ["AppendResult", "EventLog", "Message", "Record", "TopicPartition", "partition_for"]
