from pathlib import Path

from millrace.pipeline.log.base import EventLog
from millrace.pipeline.log.memory import MemoryEventLog
from tests.pipeline.log.contract import EventLogContract


class TestMemoryEventLog(EventLogContract):
    def make_log(self, tmp_path: Path) -> EventLog:
        return MemoryEventLog(partitions=4)

    def test_partitions_per_topic(self) -> None:
        log = MemoryEventLog(partitions=2, partitions_per_topic={"wide": 8})
        assert (log.partitions("t"), log.partitions("wide")) == (2, 8)
