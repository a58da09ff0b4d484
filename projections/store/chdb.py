"""ChdbStore: the embedded ClickHouse (chDB) on a data directory, through a small pool
of sessions.

What chDB 4.4 (ClickHouse 26.9) does, measured (``tests/projections/test_chdb_pool.py``
pins the parts this module relies on):

- chDB runs one embedded server per process, on one data directory (a second path
  fails: "EmbeddedServer already initialized with path ..."); any number of sessions
  may connect to it, ``:memory:`` included, and see the same tables.
- Queries on *different* sessions run concurrently: the binding releases the GIL and
  there is no process-wide lock (two 0.6 s single-thread queries on two sessions: 0.74 s
  wall on 2 cores; a ``SELECT 1`` on one session answers in ~1 ms while another is
  busy). Queries on *one* session run one after the other (the same two: 1.3 s), and a
  session keeps a query's parameters on itself, so two threads must never share one.
- The work runs on chDB's own global thread pool, not on the calling thread, so the
  caller's thread priority does not matter; ``max_threads`` (default: the cores) is per
  query, for every session alike. The ``priority`` setting works across sessions: a
  query with a higher value is paused while queries with a lower one run (a 1-thread
  query next to seven busy ones: 0.31 s with equal priorities, 0.11 s with priority 1
  against 10; 0.08 alone). It does nothing for the pipeline's Python work (decode,
  process, the simulator), which is not a query.
- ``os_thread_priority = 19`` renices the pool threads while they run that query and
  restores them after (no later query ran on a reniced thread in 30 tries): a Python
  loop next to three busy 1-thread queries on 2 cores got 0.37 of a core at equal
  nice, 0.78 at 19. ClickHouse applies it only with CAP_SYS_NICE (root, or
  ``--cap-add SYS_NICE`` in Docker), else silently not (:func:`can_renice_threads`).
- A query that fails (``max_execution_time`` exceeded, among others) leaves its
  partial output on the session, and the session's next result comes with it in front
  ("unexpected content after document" when parsing it). Closing the session clears
  it; other sessions are not affected; opening a session takes ~1 ms.

Hence: a store is a pool of ``sessions`` sessions; a query checks one out for itself
alone, a session whose query failed is closed rather than returned, and ``settings``
(``SET`` on every session it opens) give a store's queries their priority and thread
cap. The engine opens one store for the writer, a pool for the API's reads and one
for analyst SQL (see ``pipeline.cli.engine``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pyarrow as pa

from millrace.pipeline.errors import StoreError
from millrace.projections.store.base import ProjectionStore, QueryResult, settings_clause

T = TypeVar("T")


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


#: session settings of the pipeline's and the API's stores: they take precedence (see
#: ``priority`` above) over analyst queries
PIPELINE_SETTINGS: dict[str, Any] = {"priority": 1}
#: session settings of the analyst SQL store: paused while a pipeline or API query runs,
#: lowest OS priority (where chDB may renice), one thread per query unless the query's
#: own SETTINGS say otherwise
ANALYST_SETTINGS: dict[str, Any] = {"priority": 10, "os_thread_priority": 19, "max_threads": 1}

_CAP_SYS_NICE = 23


def can_renice_threads() -> bool:
    """Whether this process has CAP_SYS_NICE, which chDB needs to apply
    ``os_thread_priority`` (without it analyst queries compete with the pipeline's
    threads at equal OS priority)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_NICE & 1)
    except OSError:
        pass
    return False


class ChdbStore(ProjectionStore):
    """Projection store on chDB: ``path`` None = in memory (tests).

    ``sessions`` queries may run at once, each on a session of its own (more wait for
    one to be free); every session starts with ``SET`` of ``settings`` (e.g.
    ``{"priority": 10, "max_threads": 1}``; a query's own settings win).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        sessions: int = 1,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        if sessions < 1:
            raise ValueError("sessions must be at least 1")
        self.path = str(path) if path is not None else None
        self.sessions = sessions
        self.settings = dict(settings or {})
        settings_clause(self.settings)  # checks the names now, not at the first query
        self._cond = threading.Condition()
        self._idle: list[Any] = []  # open sessions no query holds
        self._open = 0  # sessions open or being opened, idle or held
        # close() ends the sessions held by queries when they come back
        self._generation = 0

    # -- the pool -------------------------------------------------------------------

    def _new_session(self) -> Any:
        session = _import_chdb()
        if self.path is not None:
            Path(self.path).mkdir(parents=True, exist_ok=True)
        try:
            s = session.Session(self.path or ":memory:")
        except Exception as exc:
            raise StoreError(f"cannot open chDB at {self.path}: {exc}") from exc
        try:
            # numbers as JSON numbers, not quoted strings
            s.query("SET output_format_json_quote_64bit_integers = 0")
            for name, value in self.settings.items():
                s.query("SET" + settings_clause({name: value}).removeprefix(" SETTINGS"))
        except Exception as exc:
            _close_quietly(s)
            raise StoreError(f"cannot set up a chDB session: {exc}") from exc
        return s

    def _checkout(self) -> tuple[Any, int]:
        with self._cond:
            while not self._idle and self._open >= self.sessions:
                self._cond.wait()
            generation = self._generation
            if self._idle:
                return self._idle.pop(), generation
            self._open += 1
        try:
            return self._new_session(), generation
        except BaseException:
            self._gone()
            raise

    def _checkin(self, s: Any, generation: int) -> None:
        with self._cond:
            if generation == self._generation:
                self._idle.append(s)
                self._cond.notify()
                return
        self._discard(s)

    def _discard(self, s: Any) -> None:
        _close_quietly(s)
        self._gone()

    def _gone(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def _run(self, work: Callable[[Any], T]) -> T:
        """``work(session)`` on a session of its own; a session whose work failed is
        closed (its leftover output would precede the next result), never reused."""
        s, generation = self._checkout()
        try:
            out = work(s)
        except BaseException as exc:
            self._discard(s)
            if isinstance(exc, Exception) and not isinstance(exc, StoreError):
                raise StoreError(str(exc).strip()) from exc
            raise
        self._checkin(s, generation)
        return out

    # -- the port -------------------------------------------------------------------

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        text = sql + settings_clause(settings)
        bound = _bind(params)

        def work(s: Any) -> Any:
            res = s.query(text, "JSONCompact", params=bound)
            data = res.data() if hasattr(res, "data") else str(res)
            # parsed before the session goes back: output it cannot parse means the
            # session is not clean
            return orjson.loads(data) if data.strip() else {}

        doc = self._run(work)
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
        text = sql + settings_clause(settings)
        bound = _bind(params)

        def work(s: Any) -> Any:
            # the Arrow file chDB wrote, read here: chDB's own "ArrowTable" output imports
            # pandas on every call only to check it is installed (0.5-0.8 s of CPU at the
            # first query of each process; nothing of ours uses pandas)
            res = s.query(text, "Arrow", params=bound)
            if len(res) == 0:
                return pa.Table.from_batches([], schema=pa.schema([]))
            return pa.ipc.open_file(res.get_memview().view()).read_all()

        table: pa.Table = self._run(work)
        return table

    def insert_arrow(
        self, sql: str, table: pa.Table, settings: Mapping[str, Any] | None = None
    ) -> None:
        text = sql.replace("{input}", "Python(millrace_input)")
        if settings:
            # INSERT INTO t SETTINGS ... SELECT: the settings belong to the insert
            parts = _SELECT.split(text, maxsplit=1)
            if len(parts) == 2:
                text = f"{parts[0]}{settings_clause(settings)} SELECT {parts[1]}"
            else:
                text += settings_clause(settings)

        def work(s: Any) -> None:
            # chDB's Python() table function resolves the name in the caller's frame
            millrace_input = table  # noqa: F841 - read by chDB through the frame
            s.query(text, "CSV")

        self._run(work)

    def close(self) -> None:
        """Close the idle sessions now and the held ones when their query ends; the
        store opens new sessions if used again."""
        with self._cond:
            self._generation += 1
            idle, self._idle = self._idle, []
        for s in idle:
            self._discard(s)


def _close_quietly(session: Any) -> None:
    try:
        session.close()
    except Exception:  # closing a broken session is best effort
        pass
