"""MemoryCheckpoints passes the Checkpoints contract."""

from __future__ import annotations

from millrace.pipeline.alarms.runner import Checkpoints, MemoryCheckpoints

from .contract import CheckpointsContract


class TestMemoryCheckpoints(CheckpointsContract):
    def make(self) -> Checkpoints:
        return MemoryCheckpoints()
