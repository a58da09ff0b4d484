"""ClickHouseServerStore: a ClickHouse server over the native protocol (clickhouse-driver).

Parameters are bound by the server: the driver runs with its ``server_side_params``
client setting (clickhouse-driver >= 0.2.7), which leaves ``{name:Type}`` placeholders
in the text and sends the values as query parameters in the Query packet, so
``%`` in SQL needs no doubling and no value is ever spliced into the text.

``insert_arrow`` turns ``{input}`` into ClickHouse's ``input('<structure>')`` table
function, built from the Arrow schema; the driver receives the sample block of that
structure from the server and sends the columns as Native blocks.

Connections are opened lazily from a small pool: the API and the writer share one
store from different threads, and a driver ``Client`` is one connection that must not
be used by two threads at once.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from uuid import UUID

import pyarrow as pa

from millrace.pipeline.errors import StoreError
from millrace.projections.store.base import ProjectionStore, QueryResult, settings_clause

INSTALL_HINT = "pip install 'millrace[clickhouse]'"

_INSERT_HEAD = re.compile(
    r"""^\s*INSERT\s+INTO\s+(?:TABLE\s+)?
        (?:`[^`]+`|[\w]+)(?:\.(?:`[^`]+`|[\w]+))?   # [db.]table
        (?:\s*\([^()]*\))?                            # (column list)
    """,
    re.IGNORECASE | re.VERBOSE,
)


def _import_driver() -> Any:
    try:
        import clickhouse_driver
        from clickhouse_driver.util.helpers import parse_url
    except ImportError as exc:
        raise StoreError(f"clickhouse-driver is not installed: {INSTALL_HINT}") from exc
    return clickhouse_driver, parse_url


# --- Arrow schema -> input() structure --------------------------------------------

_SIMPLE: dict[pa.DataType, str] = {
    pa.string(): "String",
    pa.large_string(): "String",
    pa.binary(): "String",
    pa.large_binary(): "String",
    pa.bool_(): "Bool",
    pa.int8(): "Int8",
    pa.int16(): "Int16",
    pa.int32(): "Int32",
    pa.int64(): "Int64",
    pa.uint8(): "UInt8",
    pa.uint16(): "UInt16",
    pa.uint32(): "UInt32",
    pa.uint64(): "UInt64",
    pa.float32(): "Float32",
    pa.float64(): "Float64",
    pa.date32(): "Date32",
}
_TS_PRECISION = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def clickhouse_type(arrow_type: pa.DataType) -> str:
    """The ClickHouse type that reads values of ``arrow_type`` (no Nullable)."""
    if arrow_type in _SIMPLE:
        return _SIMPLE[arrow_type]
    if pa.types.is_timestamp(arrow_type):
        tz = f", '{arrow_type.tz}'" if arrow_type.tz else ""
        return f"DateTime64({_TS_PRECISION[arrow_type.unit]}{tz})"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return f"Array({clickhouse_type(arrow_type.value_type)})"
    if pa.types.is_dictionary(arrow_type):
        return f"LowCardinality({clickhouse_type(arrow_type.value_type)})"
    raise StoreError(f"no ClickHouse type for Arrow type {arrow_type}")


def _quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def input_structure(schema: pa.Schema, nullable: frozenset[str] = frozenset()) -> str:
    """``input()``'s structure for ``schema``; columns named in ``nullable`` hold NULLs."""
    parts = []
    for field in schema:
        ch_type = clickhouse_type(field.type)
        if field.name in nullable and not ch_type.startswith(("Array(", "LowCardinality(")):
            ch_type = f"Nullable({ch_type})"
        parts.append(f"{_quote_ident(field.name)} {ch_type}")
    return ", ".join(parts)


def _string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render_insert(sql: str, table: pa.Table, settings: Mapping[str, Any] | None) -> str:
    """``sql`` with ``{input}`` bound to ``input(...)`` and SETTINGS after the target.

    For ``INSERT ... SELECT`` ClickHouse takes the insert's SETTINGS between the target
    (with its column list) and the SELECT.
    """
    if "{input}" not in sql:
        raise StoreError("insert_arrow needs the {input} placeholder in its SQL")
    nullable = frozenset(
        name for name, col in zip(table.column_names, table.columns, strict=True) if col.null_count
    )
    text = sql.replace(
        "{input}", f"input({_string_literal(input_structure(table.schema, nullable))})"
    )
    if settings:
        head = _INSERT_HEAD.match(text)
        if head is None:
            raise StoreError(f"not an INSERT INTO ... SELECT statement: {sql[:80]!r}")
        text = text[: head.end()] + settings_clause(settings) + text[head.end() :]
    return text


# --- values ---------------------------------------------------------------------


def _param(v: Any) -> Any:
    # the driver renders bool as 'True', which UInt8 parameters do not parse
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, list | tuple):
        return [_param(x) for x in v]
    return v


def _plain(v: Any) -> Any:
    """Driver values as chDB's JSONCompact gives them (JSON-friendly)."""
    if v is None or isinstance(v, str | int | float):
        return v
    if isinstance(v, dt.datetime):
        text = v.strftime("%Y-%m-%d %H:%M:%S")
        return text + f".{v.microsecond:06d}" if v.microsecond else text
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, Decimal | UUID | IPv4Address | IPv6Address):
        return str(v)
    return v


def _error(exc: BaseException) -> StoreError:
    message = getattr(exc, "message", None) or str(exc)
    code = getattr(exc, "code", None)
    if code:
        return StoreError(f"ClickHouse error {code}: {message}".strip(), code=int(code))
    return StoreError(message.strip())


# --- the store --------------------------------------------------------------------


class ClickHouseServerStore(ProjectionStore):
    """Projection store on a ClickHouse server, e.g.
    ``clickhouse://user:password@host:9000/default?secure=false``.

    The constructor only parses the URL; connections open on first use, at most
    ``pool_size`` at a time.
    """

    def __init__(self, url: str, pool_size: int = 4, cluster: str | None = None) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.url = url
        _, parse_url = _import_driver()
        scheme = url.partition("://")[0]
        if scheme not in ("clickhouse", "clickhouses"):
            raise StoreError(f"not a clickhouse:// or clickhouses:// URL: {url!r}")
        try:
            host, kwargs = parse_url(url)
        except (ValueError, AttributeError) as exc:
            raise StoreError(f"bad ClickHouse URL: {exc}") from exc
        if not host:
            raise StoreError(f"no host in ClickHouse URL {url!r}")
        settings = dict(kwargs.pop("settings", {}))
        settings["server_side_params"] = True
        if cluster is not None:
            # an insert into a Distributed table returns once every shard holds its
            # part (not when queued for later): a failed insert is then retried with
            # the same deduplication token, and a "done" insert is really done
            settings.setdefault("insert_distributed_sync", 1)
        self.host: str = host
        self.client_kwargs: dict[str, Any] = {**kwargs, "settings": settings}
        self._slots = threading.BoundedSemaphore(pool_size)
        self._idle: list[Any] = []
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def _new_client(self) -> Any:
        driver, _ = _import_driver()
        client = driver.Client(self.host, **self.client_kwargs)
        with self._lock:
            self._all.append(client)
        return client

    @contextmanager
    def _client(self) -> Iterator[Any]:
        if self._closed:
            raise StoreError("the ClickHouse store is closed")
        with self._slots:
            with self._lock:
                client = self._idle.pop() if self._idle else None
            if client is None:
                client = self._new_client()
            try:
                yield client
            finally:
                # the driver drops a failed connection itself and reconnects on next use
                with self._lock:
                    self._idle.append(client)

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        start = time.perf_counter()
        with self._client() as client:
            try:
                rows, columns = client.execute(
                    sql,
                    {k: _param(v) for k, v in (params or {}).items()},
                    with_column_types=True,
                    settings=dict(settings or {}),
                )
                progress = client.last_query.progress if client.last_query else None
            except Exception as exc:
                raise _error(exc) from exc
        return QueryResult(
            columns=[name for name, _ in columns],
            types=[ch_type for _, ch_type in columns],
            rows=[[_plain(v) for v in row] for row in rows],
            elapsed_s=time.perf_counter() - start,
            rows_read=int(getattr(progress, "rows", 0) or 0),
        )

    def query_arrow(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        with self._client() as client:
            try:
                table = client.query_arrow(
                    sql,
                    {k: _param(v) for k, v in (params or {}).items()},
                    settings=dict(settings or {}),
                    field_metadata=False,
                )
            except Exception as exc:
                raise _error(exc) from exc
        if not isinstance(table, pa.Table):
            raise StoreError(f"clickhouse-driver returned {type(table).__name__}, not Arrow")
        return table

    def insert_arrow(
        self, sql: str, table: pa.Table, settings: Mapping[str, Any] | None = None
    ) -> None:
        text = render_insert(sql, table, settings)
        columns = [col.to_pylist() for col in table.columns]
        with self._client() as client:
            try:
                client.execute(text, columns, columnar=True)
            except Exception as exc:
                raise _error(exc) from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._all, self._idle = self._all, [], []
        for client in clients:
            try:
                client.disconnect()
            except Exception:  # closing a broken connection is best effort
                pass
