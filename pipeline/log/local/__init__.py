"""The embedded event log: segment files on local disk (see :mod:`.log`)."""

from pipeline.log.local.config import LocalLogConfig
from pipeline.log.local.log import LocalEventLog

__all__ = ["LocalEventLog", "LocalLogConfig"]
