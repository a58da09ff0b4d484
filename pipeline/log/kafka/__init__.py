"""The distributed event log: Kafka via aiokafka (see :mod:`.log`).

Importing this package needs no Kafka client; ``KafkaEventLog.start()`` and
:func:`.admin.ensure_topics` raise :class:`~millrace.pipeline.errors.LogError` with an install
hint when the ``kafka`` extra is missing.
"""

from millrace.pipeline.log.kafka.config import KafkaLogConfig
from millrace.pipeline.log.kafka.log import KafkaEventLog

__all__ = ["KafkaEventLog", "KafkaLogConfig"]
