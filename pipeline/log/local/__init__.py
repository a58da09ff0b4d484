"""The embedded event log: segment files on local disk (see :mod:`.log`)."""

from millrace.pipeline.log.local.config import LocalLogConfig
from millrace.pipeline.log.local.log import LocalEventLog

__all__ = ["LocalEventLog", "LocalLogConfig"]
