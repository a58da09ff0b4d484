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

import re


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
    """A projection store failed. ``code`` and ``name`` are ClickHouse's error code and
    name (``60``, ``"UNKNOWN_TABLE"``) when the store reported one, so callers decide by
    code rather than by matching message text."""

    def __init__(self, message: str, code: int | None = None, name: str | None = None) -> None:
        super().__init__(message)
        if code is None:
            code, name = clickhouse_code(message)
        self.code = code
        self.name = name


_CODE = re.compile(r"Code: (\d+)\.")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*(?:\(version [^)]*\))?\s*$")


def clickhouse_code(message: str) -> tuple[int | None, str | None]:
    """ClickHouse's ``Code: N.`` and trailing ``(NAME)`` of an exception text."""
    code = _CODE.search(message)
    name = _NAME.search(message.strip().splitlines()[0] if message.strip() else "")
    return (int(code.group(1)) if code else None, name.group(1) if name else None)


class ReadOnlyViolation(StoreError):
    pass


class ConnectorError(MillraceError):
    pass
