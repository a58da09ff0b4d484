"""The millrace exception tree.

Every exception millrace defines ends in ``Error`` and descends from :class:`MillraceError`
(``tests/pipeline/test_errors.py`` walks every module of the five packages and checks).
Where existing callers — or pydantic, which turns only ``ValueError`` raised in a
validator into a validation error — rely on a builtin base, the class keeps it as a
second base (marked ``+ValueError`` and so on below).

    MillraceError
     ├── ConfigError                 invalid configuration or commissioning file
     │    ├── RuleError              an alarm rule that cannot be accepted   (+ValueError)
     │    └── WatchSettingsError     pipeline.identities.watch: bad settings (+ValueError)
     ├── SchemaError                 an event does not match its Avro schema
     │    ├── DecodeError            bytes that cannot be decoded into an event
     │    └── InvalidDatumError      avro_writer: a datum its schema cannot encode
     ├── FoldError                   an event a fold refuses; the processor dead-letters it
     │    ├── IdentityRejectedError  pipeline.identities.state             (+ValueError)
     │    ├── AlarmRefusedError      pipeline.processors.alarms            (+ValueError)
     │    ├── InvalidStatusError     pipeline.processors.status            (+ValueError)
     │    └── ServiceRejectedError   pipeline.services.state               (+ValueError)
     ├── LogError                    the event log failed
     │    ├── CorruptRecordError     a record whose CRC or framing is wrong
     │    │    └── FrameError        pipeline.log.local.segment
     │    └── LogClosedError         the log was used after close()
     ├── ArchiveError                pipeline.archive: an archive file or store failed
     │    ├── ArchiveFormatError     not an archive, a wrong checksum, an unknown schema
     │    ├── ArchiveStoreError      the archive store unreachable or refusing a write
     │    └── NotCanonicalError      archive.fastread: a block for fastavro (internal, +ValueError)
     ├── TaskError                   pipeline.tasks: a task that cannot run (ends it failed)
     │    └── UnknownTaskKindError   no handler registered for the task's kind
     ├── RestoreError                pipeline.restore.errors: a restore that cannot run as asked
     │    ├── RestoreForbiddenError  a URL outside the allow-list, or undeclared credentials (403)
     │    └── ParentError            restore.offload_child: the engine could not answer a read
     ├── ReplayError                 projections.replay: a replay that cannot run
     │    └── UnknownProjectionError a named projection does not exist (400)
     ├── LiveMovedError              projections.replay_live: the live fold moved while held
     ├── ClusterSwapError            projections.replay_cluster_sql: a swap not done on every node
     ├── HoldError                   pipeline.runtime.hold: a worker did not answer a pause
     ├── FoldWorkerError             pipeline.runtime.worker: the fold worker died or failed
     ├── EngineUnreachableError      pipeline.cli.replay_client: no running engine answers
     ├── ReplayFailedError           pipeline.cli.replay_client: the engine refused or failed it
     ├── RestoreFailedError          pipeline.cli.restore: the restore task ended failed
     ├── NotOwnedError               faust runtime: the partition was lost  (+RuntimeError)
     ├── RebalancingError            faust runtime: between assignments     (+RuntimeError)
     ├── StoreError                  a projection store failed (ClickHouse ``code``/``name``)
     │    ├── ReadOnlyViolationError a write attempted through the read-only SQL path
     │    └── ClusterSqlError        projections.cluster: DDL it cannot make ON CLUSTER
     ├── QueryError                  projections.errors: a bad filter field (+ValueError)
     ├── QueryRejectedError          projections.sandbox_catalog: analyst SQL refused (+ValueError)
     ├── ConnectorError              a connector could not reach or decode its device
     ├── connector input errors      (+ValueError; not ConnectorError: a status line shows
     │                                their class name, a ConnectorError's text stands alone)
     │    FileFormatError (files.csvparse), CodecError (modbus.codec),
     │    JsonPathError (mqtt.jsonpath), PathNotFoundError (mqtt.jsonpath, +LookupError),
     │    DecodeError (mqtt.payload: a payload, not an Avro record), TopicError (mqtt.topics),
     │    WriteError (opcua.values)
     ├── CredentialError             api.device_auth: a device credential refused (+ValueError)
     ├── AccessError                 api.users.store: a user or role change refused (field)
     │    ├── AccessNotFoundError    no such user or role (404)
     │    └── AccessConflictError    exists, built-in, in use, the last admin (409)
     ├── PasswordRejectedError       api.users.policy: a password breaks a rule (+ValueError)
     ├── RefreshRefusedError         api.users.sessions: unknown, expired or reused refresh token
     ├── FilterError                 api.stream_filters: a bad live-stream filter (+ValueError)
     ├── StreamNotFoundError         api.stream: no such live stream        (+LookupError)
     ├── StreamLimitError            api.stream: too many live streams
     │    └── OwnerStreamLimitError  ... for one API key
     ├── _RefusedError               api.yamlbody: a YAML body refused (private, caught there)
     ├── ConsoleApiError             api.console.client: the API refused a console request
     │    └── SignedOutError         the tab's token is no longer accepted (401)
     └── ApiError                    api.errors: an HTTP answer (status, code, message)

``ApiError`` is in the tree on purpose. It is not a failure of the engine but an answer
the API layer decides to give; it is still raised deliberately, carries a stable code
and a message for the user, and is exactly what ``except MillraceError`` at an edge means
("an error we raised on purpose, show its message"). Keeping it out would make the
rule "every exception" need an allow-list, the first crack in it. Code below ``api``
never raises it, and ``api`` code that catches ``MillraceError`` must let it through.

Library errors are mapped at the edge with ``raise ... from exc``. Nothing decides an
HTTP status or a retry by matching message text: store errors carry ClickHouse's code.
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


class FoldError(MillraceError, ValueError):
    """An event a fold (identity, alarm, status) refuses in the state it finds; the
    processor dead-letters it. Also a ``ValueError`` for callers that catch that."""


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


class ReadOnlyViolationError(StoreError):
    pass


class ConnectorError(MillraceError):
    pass
