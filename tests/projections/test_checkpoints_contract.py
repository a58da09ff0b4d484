"""StoreCheckpoints (millrace.checkpoints, on chDB) passes the Checkpoints contract."""

from __future__ import annotations

import pytest

from millrace.pipeline.alarms.runner import Checkpoints
from millrace.projections.checkpoints import StoreCheckpoints
from millrace.projections.store.chdb import ChdbStore
from tests.pipeline.checkpoints.contract import CheckpointsContract


class TestStoreCheckpoints(CheckpointsContract):
    @pytest.fixture(autouse=True)
    def _store(self, store: ChdbStore) -> None:
        self.store = store

    def make(self) -> Checkpoints:
        return StoreCheckpoints(self.store)
