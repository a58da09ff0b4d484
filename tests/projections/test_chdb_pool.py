"""The chDB store's pool of sessions, and the chDB behaviour it is built on (see the
docstring of ``projections.store.chdb``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import orjson
import pyarrow as pa
import pytest

from millrace.pipeline.errors import StoreError
from millrace.projections.store.chdb import ChdbStore

# ~10^10 rows: never finishes inside the test's time limits
SLOW = (
    "SELECT count() FROM numbers(10000000000) WHERE sipHash64(toString(number)) % 7 = 3 "
    "SETTINGS max_execution_time = {t}, max_threads = 1"
)


@pytest.fixture
def pool(chdb_store: ChdbStore) -> Iterator[ChdbStore]:
    """A second store of three sessions on the shared test data directory (chDB has one
    data directory per process)."""
    assert chdb_store.path is not None
    store = ChdbStore(chdb_store.path, sessions=3)
    yield store
    store.close()


def test_a_session_keeps_a_failed_querys_output(chdb_store: ChdbStore) -> None:
    """Why a failed session is closed: chDB hands its leftover output to the next query
    of that session (the 500 'unexpected content after document' of issue 12)."""
    from chdb import session

    s = session.Session(chdb_store.path)
    try:
        with pytest.raises(Exception, match="TIMEOUT_EXCEEDED"):
            s.query(SLOW.format(t=0.3), "JSONCompact")
        data = s.query("SELECT 1 AS x", "JSONCompact").data()
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(data)
    finally:
        s.close()


@pytest.mark.parametrize("fmt", ["execute", "arrow"])
def test_a_timed_out_query_leaves_no_trace(fmt: str, chdb_store: ChdbStore) -> None:
    store = ChdbStore(chdb_store.path, sessions=1)
    try:
        with pytest.raises(StoreError) as err:
            if fmt == "execute":
                store.execute(SLOW.format(t=0.3))
            else:
                store.query_arrow(SLOW.format(t=0.3))
        assert err.value.name == "TIMEOUT_EXCEEDED"
        # the same (only) slot of the pool answers the next query cleanly
        assert store.execute("SELECT {x:UInt8} AS x", {"x": 7}).rows == [[7]]
        assert store.query_arrow("SELECT 2 AS y").to_pylist() == [{"y": 2}]
    finally:
        store.close()


@pytest.mark.parametrize("sessions", [1, 3])
def test_reads_after_timeouts_from_other_threads_never_fail(
    chdb_store: ChdbStore, sessions: int
) -> None:
    """Timeouts and normal reads interleaved on every session of the pool. (Before the
    pool, one session shared by threads answered reads 'unexpected content after
    document' here: the failed session was reset after another thread had used it.)"""
    pool = ChdbStore(chdb_store.path, sessions=sessions)
    errors: list[BaseException] = []
    wrong: list[object] = []

    def timing_out() -> None:
        for _ in range(6):
            try:
                pool.execute(SLOW.format(t=0.1))
            except StoreError as exc:
                if exc.name != "TIMEOUT_EXCEEDED":
                    errors.append(exc)

    def reading(base: int) -> None:
        for i in range(100):
            try:
                rows = pool.execute("SELECT {x:UInt32} AS x", {"x": base + i}).rows
            except BaseException as exc:  # collected for the assert
                errors.append(exc)
                return
            if rows != [[base + i]]:
                wrong.append(rows)

    threads = [threading.Thread(target=timing_out) for _ in range(2)]
    threads += [threading.Thread(target=reading, args=(b * 1000,)) for b in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.close()
    assert errors == [] and wrong == []


def test_sessions_of_a_pool_run_queries_at_once(pool: ChdbStore) -> None:
    """Two slow queries hold two sessions; a third session still answers."""
    started = threading.Barrier(3)
    done: list[float] = []

    def slow() -> None:
        started.wait()
        with pytest.raises(StoreError):
            pool.execute(SLOW.format(t=1.5))

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.3)  # both slow queries are running
    t0 = time.monotonic()
    assert pool.execute("SELECT 1 AS x").rows == [[1]]
    done.append(time.monotonic() - t0)
    for t in threads:
        t.join()
    # a lock shared by the sessions would have held it until the slow ones ended
    assert done[0] < 1.0


def test_more_queries_than_sessions_wait_for_one(chdb_store: ChdbStore) -> None:
    assert chdb_store.path is not None
    store = ChdbStore(chdb_store.path, sessions=2)
    results: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        rows = store.execute("SELECT {i:UInt8} AS i, sleep(0.05)", {"i": i}).rows
        with lock:
            results.append(rows[0][0])

    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == list(range(8))
        assert store._open <= 2
    finally:
        store.close()


def test_settings_apply_to_every_session(chdb_store: ChdbStore) -> None:
    assert chdb_store.path is not None
    store = ChdbStore(chdb_store.path, sessions=2, settings={"priority": 10, "max_threads": 1})
    try:
        got = store.execute("SELECT getSetting('priority'), getSetting('max_threads')").rows
        assert got == [[10, 1]]
        # a session opened after a failure gets them too
        with pytest.raises(StoreError):
            store.execute("SELECT throwIf(1)")
        got = store.execute("SELECT getSetting('priority'), getSetting('max_threads')").rows
        assert got == [[10, 1]]
        # a query's own settings win
        got = store.execute("SELECT getSetting('max_threads')", settings={"max_threads": 2}).rows
        assert got == [[2]]
    finally:
        store.close()


def test_bad_settings_are_refused_at_once() -> None:
    with pytest.raises(ValueError):
        ChdbStore(None, settings={"max threads; DROP": 1})
    with pytest.raises(ValueError):
        ChdbStore(None, sessions=0)


def test_inserts_through_a_pool(store: ChdbStore, chdb_store: ChdbStore) -> None:
    assert chdb_store.path is not None
    pool = ChdbStore(chdb_store.path, sessions=2)
    try:
        pool.execute("CREATE TABLE IF NOT EXISTS default.pool_t (x UInt32) ENGINE = Memory")
        pool.execute("TRUNCATE TABLE default.pool_t")
        table = pa.table({"x": pa.array(range(1000), pa.uint32())})

        def insert() -> None:
            pool.insert_arrow("INSERT INTO default.pool_t SELECT x FROM {input}", table)

        threads = [threading.Thread(target=insert) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert pool.execute("SELECT count(), sum(x) FROM default.pool_t").rows == [
            [4000, 4 * 499500]
        ]
    finally:
        pool.execute("DROP TABLE IF EXISTS default.pool_t")
        pool.close()


def test_close_ends_held_sessions_when_they_come_back(chdb_store: ChdbStore) -> None:
    assert chdb_store.path is not None
    store = ChdbStore(chdb_store.path, sessions=2)
    entered = threading.Event()

    def slow() -> None:
        entered.set()
        store.execute("SELECT sleep(0.3)")

    t = threading.Thread(target=slow)
    t.start()
    entered.wait()
    time.sleep(0.1)
    store.close()
    t.join()
    assert store._idle == [] and store._open == 0
    # usable again: opens a fresh session
    assert store.execute("SELECT 3 AS x").rows == [[3]]
    store.close()
