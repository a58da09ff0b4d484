"""The millrace exception tree.

    MillraceError
     ├── ConfigError            invalid configuration or commissioning file
     ├── SchemaError            an event does not match its Avro schema
     │    └── DecodeError       bytes that cannot be decoded into an event
     ├── LogError               the event log failed
     │    ├── CorruptRecordError  a record whose CRC or framing is wrong
     │    └── LogClosedError    the log was used after close()
     ├── StoreError             a projection store failed
     │    └── ReadOnlyViolation a write attempted through the read-only SQL path
     └── ConnectorError         a connector could not reach or decode its device

Library errors are mapped at the edge with ``raise ... from exc``.
"""


class MillraceError(Exception):
    """Base of every error millrace raises on purpose."""


class ConfigError(MillraceError):
    pass


class SchemaError(MillraceError):
    pass


class DecodeError(SchemaError):
    pass


class LogError(MillraceError):
    pass


class CorruptRecordError(LogError):
    pass


class LogClosedError(LogError):
    pass


class StoreError(MillraceError):
    pass


class ReadOnlyViolation(StoreError):
    pass


class ConnectorError(MillraceError):
    pass
