"""ChdbStore: the embedded ClickHouse (chDB) on a data directory.

chDB allows one process per data directory; inside that process several sessions may
share it and run concurrently, so the engine opens one store for writing and one for
the API's reads.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from pipeline.errors import StoreError
from projections.store.base import ProjectionStore, QueryResult, settings_clause


def _import_chdb() -> Any:
    try:
        from chdb import session
    except ImportError as exc:  # pragma: no cover - chdb is a core dependency
        raise StoreError("chdb is not installed: pip install 'chdb>=4.4'") from exc
    return session


def _literal(v: Any) -> str:
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_literal(x) for x in v) + "]"
    raise TypeError(f"cannot bind {type(v).__name__}")


_SELECT = re.compile(r"\sSELECT\s")
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"})


def _escaped(v: str) -> str:
    """Query parameters are read in ClickHouse's escaped (TSV) format."""
    return v.translate(_ESCAPES)


def _bind(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Strings escaped, arrays as ClickHouse literals."""
    out: dict[str, Any] = {}
    for k, v in (params or {}).items():
        if isinstance(v, str):
            out[k] = _escaped(v)
        elif isinstance(v, list | tuple):
            out[k] = _literal(v)
        else:
            out[k] = v
    return out


class ChdbStore(ProjectionStore):
    """Projection store on chDB. ``path`` None = in memory (tests)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else None
        self._session: Any = None
        self._lock = threading.Lock()
        # one query at a time per session: chDB keeps a query's parameters on the
        # session, so two threads querying at once could run one's SQL with the other's
        # parameters ("Substitution `now` is not set"), and a reset after a failed
        # query must not close the session under another thread's query
        self._busy = threading.RLock()

    def _s(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    session = _import_chdb()
                    if self.path is not None:
                        Path(self.path).mkdir(parents=True, exist_ok=True)
                    try:
                        self._session = session.Session(self.path or ":memory:")
                        # numbers as JSON numbers, not quoted strings
                        self._session.query("SET output_format_json_quote_64bit_integers = 0")
                    except Exception as exc:
                        raise StoreError(f"cannot open chDB at {self.path}: {exc}") from exc
        return self._session

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        text = sql + settings_clause(settings)
        try:
            with self._busy:
                res = self._s().query(text, "JSONCompact", params=_bind(params))
                data = res.data() if hasattr(res, "data") else str(res)
            doc = orjson.loads(data) if data.strip() else {}
        except Exception as exc:
            # a failed query can leave partial output on the session that would be
            # prepended to the next result: start a fresh session
            self._reset()
            raise StoreError(str(exc).strip()) from exc
        if not doc:
            return QueryResult([], [], [])
        meta = doc.get("meta", [])
        stats = doc.get("statistics", {})
        return QueryResult(
            columns=[m["name"] for m in meta],
            types=[m["type"] for m in meta],
            rows=doc.get("data", []),
            elapsed_s=float(stats.get("elapsed", 0.0)),
            rows_read=int(stats.get("rows_read", 0)),
        )

    def query_arrow(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        try:
            with self._busy:
                res = self._s().query(
                    sql + settings_clause(settings), "ArrowTable", params=_bind(params)
                )
        except Exception as exc:
            self._reset()
            raise StoreError(str(exc).strip()) from exc
        if not isinstance(res, pa.Table):
            raise StoreError(f"chDB returned {type(res).__name__}, not an Arrow table")
        return res

    def insert_arrow(
        self, sql: str, table: pa.Table, settings: Mapping[str, Any] | None = None
    ) -> None:
        # chDB's Python() table function resolves the name in the caller's frame.
        millrace_input = table  # noqa: F841 - read by chDB through the frame
        text = sql.replace("{input}", "Python(millrace_input)")
        if settings:
            # INSERT INTO t SETTINGS ... SELECT: the settings belong to the insert
            parts = _SELECT.split(text, maxsplit=1)
            if len(parts) == 2:
                text = f"{parts[0]}{settings_clause(settings)} SELECT {parts[1]}"
            else:
                text += settings_clause(settings)
        try:
            with self._busy:
                self._s().query(text, "CSV")
        except Exception as exc:
            self._reset()
            raise StoreError(str(exc).strip()) from exc

    def _reset(self) -> None:
        with self._busy, self._lock:
            session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception:  # closing a broken session is best effort
                pass

    def close(self) -> None:
        with self._busy, self._lock:
            if self._session is not None:
                try:
                    self._session.close()
                finally:
                    self._session = None
