"""Pure processors: decoded events in, rows and dead letters out. No I/O, no clock."""

from millrace.pipeline.processors.base import Event, Outputs, Processor

__all__ = ["Event", "Outputs", "Processor"]
