"""The contract every Checkpoints adapter passes (the port in ``pipeline.alarms.runner``).

Subclass :class:`CheckpointsContract` as ``TestXxx`` and implement :meth:`make` to return
checkpoints over a storage that may be shared: every test uses names of its own.
"""

from __future__ import annotations

import uuid

import pytest

from millrace.pipeline.alarms.runner import Checkpoint, Checkpoints
from millrace.pipeline.log.base import TopicPartition

TP0 = TopicPartition("alarms", 0)
TP1 = TopicPartition("telemetry", 3)


class CheckpointsContract:
    def make(self) -> Checkpoints:
        raise NotImplementedError

    @pytest.fixture
    def checkpoints(self) -> Checkpoints:
        self.prefix = uuid.uuid4().hex
        return self.make()

    def n(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def test_nothing_saved_loads_none(self, checkpoints: Checkpoints) -> None:
        assert checkpoints.load(self.n("never")) is None

    def test_a_save_loads_back_whole(self, checkpoints: Checkpoints) -> None:
        cp = Checkpoint(
            version=1,
            positions={TP0: 12, TP1: 7},
            state='{"tracks": [1, 2]}',
            outbox='[{"alarm_id": "a-1"}]',
        )
        checkpoints.save(self.n("runner"), cp, now_us=1_000)
        assert checkpoints.load(self.n("runner")) == cp

    def test_the_latest_save_wins(self, checkpoints: Checkpoints) -> None:
        checkpoints.save(self.n("runner"), Checkpoint(1, {TP0: 1}, "s1", ""), now_us=1)
        checkpoints.save(self.n("runner"), Checkpoint(2, {TP0: 5, TP1: 2}, "s2", "[]"), now_us=2)
        assert checkpoints.load(self.n("runner")) == Checkpoint(2, {TP0: 5, TP1: 2}, "s2", "[]")

    def test_a_lower_version_saved_later_does_not_win(self, checkpoints: Checkpoints) -> None:
        # a runner still stopping saves after the one that took over resumed
        checkpoints.save(self.n("runner"), Checkpoint(7, {TP0: 9}, "new", ""), now_us=1)
        checkpoints.save(self.n("runner"), Checkpoint(6, {TP0: 4}, "old", "[]"), now_us=2)
        assert checkpoints.load(self.n("runner")) == Checkpoint(7, {TP0: 9}, "new", "")

    def test_the_first_save_of_a_version_stays(self, checkpoints: Checkpoints) -> None:
        checkpoints.save(self.n("runner"), Checkpoint(3, {TP0: 5}, "first", ""), now_us=1)
        checkpoints.save(self.n("runner"), Checkpoint(3, {TP0: 2}, "second", ""), now_us=2)
        assert checkpoints.load(self.n("runner")) == Checkpoint(3, {TP0: 5}, "first", "")

    def test_names_are_independent(self, checkpoints: Checkpoints) -> None:
        checkpoints.save(self.n("a"), Checkpoint(1, {TP0: 1}, "a", ""), now_us=1)
        checkpoints.save(self.n("b"), Checkpoint(3, {TP1: 9}, "b", ""), now_us=1)
        assert checkpoints.load(self.n("a")) == Checkpoint(1, {TP0: 1}, "a", "")
        assert checkpoints.load(self.n("b")) == Checkpoint(3, {TP1: 9}, "b", "")

    def test_a_repeated_save_is_harmless(self, checkpoints: Checkpoints) -> None:
        cp = Checkpoint(4, {TP0: 8}, "s", "")
        checkpoints.save(self.n("runner"), cp, now_us=1)
        checkpoints.save(self.n("runner"), cp, now_us=2)
        assert checkpoints.load(self.n("runner")) == cp

    def test_a_loaded_checkpoint_is_a_copy(self, checkpoints: Checkpoints) -> None:
        cp = Checkpoint(1, {TP0: 1}, "s", "")
        checkpoints.save(self.n("runner"), cp, now_us=1)
        cp.positions[TP0] = 99  # the caller's object changes after the save
        loaded = checkpoints.load(self.n("runner"))
        assert loaded is not None and loaded.positions == {TP0: 1}
        loaded.positions[TP1] = 5
        assert checkpoints.load(self.n("runner")) == Checkpoint(1, {TP0: 1}, "s", "")

    def test_an_empty_checkpoint_round_trips(self, checkpoints: Checkpoints) -> None:
        checkpoints.save(self.n("runner"), Checkpoint(1), now_us=1)
        assert checkpoints.load(self.n("runner")) == Checkpoint(1, {}, "", "")
