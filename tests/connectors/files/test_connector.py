"""The files connector on real directories: formats, globs, settling, after-actions,
restart without re-reading, dead letters, a missing directory, overlapping times."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from millrace.connectors.files.config import FilesConnection, FilesEndpoint
from millrace.connectors.files.connector import FilesConnector
from millrace.pipeline.connector import Event, MemoryEventPublisher
from millrace.pipeline.telemetry_columns import samples_of

Reading = tuple[str, str, int, Any]


def us(dt: datetime) -> int:
    """Epoch microseconds, computed independently of the connector's arithmetic."""
    return int(dt.replace(microsecond=0).timestamp()) * 1_000_000 + dt.microsecond


def conn(directory: Path, **kw: Any) -> FilesConnection:
    doc: dict[str, Any] = {
        "protocol": "files",
        "directory": str(directory),
        "poll_ms": 20,
        "settle_ms": 60,
        "batch_ms": 20,
        "reconnect": {"initial_ms": 20, "max_ms": 50, "jitter": 0},
    }
    doc.update(kw)
    return FilesConnection.model_validate(doc)


def ep(identity: str, signal: str, **kw: Any) -> FilesEndpoint:
    return FilesEndpoint.model_validate(
        {"connection": "drop", "identity": identity, "signal": signal, **kw}
    )


def readings(pub: MemoryEventPublisher) -> list[Reading]:
    return [
        (e["identity"], sig, s["ts_us"], v)
        for _, e in pub.published.get("telemetry", [])
        for s in samples_of(e)
        for sig, v in s["values"].items()
    ]


def dead(pub: MemoryEventPublisher) -> list[tuple[str, Event]]:
    return list(pub.published.get("deadletter", []))


def states(pub: MemoryEventPublisher, rtype: str = "connection") -> list[tuple[str, str]]:
    return [
        (e["current_state"], e["info"])
        for _, e in pub.published.get("status", [])
        if e["resource_type"] == rtype
    ]


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def run_until(
    c: FilesConnector,
    cond: Callable[[MemoryEventPublisher], bool],
    pub: Any = None,
    linger: float = 0.0,
) -> MemoryEventPublisher:
    """Run ``c`` until ``cond`` holds, and ``linger`` s more (to see nothing else come)."""
    pub = pub or MemoryEventPublisher()
    await c.start(pub)
    try:
        await until(lambda: cond(pub))
        await asyncio.sleep(linger)
    finally:
        await c.stop()
    return pub


def write(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


# -- formats -------------------------------------------------------------------------------
def test_iso_times_with_offsets_comma_separated_every_column(tmp_path: Path) -> None:
    write(
        tmp_path / "a.csv",
        "timestamp,temp,pressure,note\n"
        "2024-05-01T10:00:00Z,21.5,1.25e3,\n"
        "2024-05-01T12:00:01.250+02:00,-3,7,\n"
        "2024-05-01 10:00:02,nan,,\n",  # no offset: csv.timezone (UTC); empty cells: none
    )
    c = FilesConnector(
        "drop", conn(tmp_path, csv={"identity": "press-1", "value_columns": ["temp", "pressure"]})
    )

    async def main() -> MemoryEventPublisher:
        return await run_until(c, lambda p: len(readings(p)) == 5)

    pub = asyncio.run(main())
    t0 = us(datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC))
    got = sorted(readings(pub), key=lambda r: (r[2], r[1]))
    assert got == [
        ("press-1", "pressure", t0, 1250.0),
        ("press-1", "temp", t0, 21.5),
        ("press-1", "pressure", t0 + 1_250_000, 7.0),
        ("press-1", "temp", t0 + 1_250_000, -3.0),
        ("press-1", "temp", t0 + 2_000_000, "nan"),  # NaN is kept as text by the base
    ]
    assert dead(pub) == []


def test_semicolon_decimal_comma_date_and_time_columns_local_zone(tmp_path: Path) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    write(
        tmp_path / "export.csv",
        "Datum;Zeit;Maschine;Temp [°C];Druck [bar];Status;Zähler\n"
        '15.01.2024;08:00:00;press-1;21,5;1,013;"RUN; auto";12\n'
        "15.07.2024;08:00:00;press-1;-0,25;2;STOP;13\n"
        "15.07.2024;08:00:00;press-2;99,0;3;RUN;1\n",  # not an endpoint's identity
        encoding="cp1252",
    )
    cfg = conn(
        tmp_path,
        csv={
            "separator": ";",
            "decimal_comma": True,
            "encoding": "cp1252",
            "timestamp": ["Datum", "Zeit"],
            "timestamp_format": "%d.%m.%Y %H:%M:%S",
            "timezone": "Europe/Berlin",
            "identity_column": "Maschine",
        },
    )
    eps = [
        ep("press-1", "temperature", column="Temp [°C]", scale=2.0, offset=1.0),
        ep("press-1", "pressure", column="Druck [bar]", scale=100_000),
        ep("press-1", "state", column="Status", data_type="string"),
        ep("press-1", "count", column=6, data_type="int32"),
    ]
    c = FilesConnector("drop", cfg, eps)
    pub = asyncio.run(run_until(c, lambda p: len(readings(p)) == 8))
    winter = us(datetime(2024, 1, 15, 8, tzinfo=berlin))
    summer = us(datetime(2024, 7, 15, 8, tzinfo=berlin))
    assert winter == us(datetime(2024, 1, 15, 7, tzinfo=UTC))
    assert summer == us(datetime(2024, 7, 15, 6, tzinfo=UTC))
    assert sorted(readings(pub), key=lambda r: (r[2], r[1])) == [
        ("press-1", "count", winter, 12),
        ("press-1", "pressure", winter, 1.013 * 100_000),
        ("press-1", "state", winter, "RUN; auto"),
        ("press-1", "temperature", winter, 21.5 * 2.0 + 1.0),
        ("press-1", "count", summer, 13),
        ("press-1", "pressure", summer, 2.0 * 100_000),
        ("press-1", "state", summer, "STOP"),
        ("press-1", "temperature", summer, -0.25 * 2.0 + 1.0),
    ]
    assert dead(pub) == []


def test_tabs_preamble_units_row_epoch_and_no_header(tmp_path: Path) -> None:
    # a datalogger file: a preamble line, the header, a units line, then data
    write(
        tmp_path / "logger" / "toa5.dat",
        '"TOA5","CR1000","station-7"\n'
        "TIMESTAMP\tRECORD\tAirT\n"
        "ms\tn\tdegC\n"
        "1700000000123.5\t1\t4.5\n"
        "1700000001000\t2\t4.75\n",
    )
    write(
        tmp_path / "raw" / "r.txt",
        "20231114221320;m-1;1;2\n20231114221321;m-2;3;4\n",  # no header: positions
    )

    async def main() -> tuple[MemoryEventPublisher, MemoryEventPublisher]:
        a = FilesConnector(
            "a",
            conn(
                tmp_path / "logger",
                include=["*.dat"],
                csv={
                    "separator": "\t",
                    "skip_rows": 1,
                    "skip_after_header": 1,
                    "timestamp": "TIMESTAMP",
                    "timestamp_format": "epoch_ms",
                    "identity": "station-7",
                    "value_type": "auto",
                },
            ),
        )
        b = FilesConnector(
            "b",
            conn(
                tmp_path / "raw",
                include=["*.txt"],
                csv={
                    "separator": ";",
                    "header": False,
                    "timestamp": 0,
                    "timestamp_format": "%Y%m%d%H%M%S",
                    "timezone": "America/New_York",
                    "identity_column": 1,
                    "value_columns": [3],
                },
            ),
        )
        return await asyncio.gather(
            run_until(a, lambda p: len(readings(p)) == 4),
            run_until(b, lambda p: len(readings(p)) == 2),
        )

    pa, pb = asyncio.run(main())
    assert sorted(readings(pa)) == [
        ("station-7", "AirT", 1_700_000_000_123_500, 4.5),
        ("station-7", "AirT", 1_700_000_001_000_000, 4.75),
        ("station-7", "RECORD", 1_700_000_000_123_500, 1),
        ("station-7", "RECORD", 1_700_000_001_000_000, 2),
    ]
    ny = ZoneInfo("America/New_York")
    t = us(datetime(2023, 11, 14, 22, 13, 20, tzinfo=ny))
    assert sorted(readings(pb)) == [("m-1", "col3", t, 2.0), ("m-2", "col3", t + 1_000_000, 4.0)]
    assert dead(pa) == dead(pb) == []


# -- selection and completeness ------------------------------------------------------------
def _row_file(path: Path) -> None:
    write(path, "timestamp,v\n1700000000,1\n")


def test_include_exclude_temp_names_and_recursion(tmp_path: Path) -> None:
    d = tmp_path / "drop"
    for name in ["a.csv", "B.CSV", "skip_me.csv", "c.txt", ".hidden.csv", "d.csv.tmp", "~e.csv"]:
        _row_file(d / name)
    _row_file(d / "sub" / "f.csv")
    _row_file(d / "sub" / "old" / "g.csv")
    csv_opts = {"timestamp_format": "epoch_s", "identity": "x"}

    def make(name: str, **kw: Any) -> FilesConnector:
        # the identity is the file name: one reading per file read
        kw.setdefault("exclude", ["skip_*"])
        return _PerFile(name, conn(d, csv=csv_opts, **kw))

    async def main() -> tuple[set[str], set[str]]:
        flat = make("flat", state_dir=str(tmp_path / "s1"))
        deep = make(
            "deep", state_dir=str(tmp_path / "s2"), recursive=True, exclude=["skip_*", "sub/old"]
        )
        p1, p2 = await asyncio.gather(
            run_until(flat, lambda p: len(readings(p)) == 2, linger=0.2),
            run_until(deep, lambda p: len(readings(p)) == 3, linger=0.2),
        )
        return {r[0] for r in readings(p1)}, {r[0] for r in readings(p2)}

    flat, deep = asyncio.run(main())
    assert flat == {"a.csv", "B.CSV"}
    assert deep == {"a.csv", "B.CSV", "sub/f.csv"}


class _PerFile(FilesConnector):
    """Reports each reading under the name of the file it came from (for glob tests)."""

    current = ""

    async def _ingest(self, item: Any, key: Any, data: bytes) -> None:
        self.current = item.rel
        await super()._ingest(item, key, data)

    def emit_reading(self, identity: str, signal: str, value: Any, *a: Any, **kw: Any) -> bool:
        return super().emit_reading(self.current, signal, value, *a, **kw)


def test_a_file_written_slowly_is_read_only_once_complete(tmp_path: Path) -> None:
    rows = [f"{1_700_000_000 + i},{i}.5\n" for i in range(40)]
    text = "timestamp,v\n" + "".join(rows)
    # chunks that end in the middle of lines, as a writer flushing its buffer does
    cuts = [*range(0, len(text), 67), len(text)]

    async def main() -> MemoryEventPublisher:
        pub = MemoryEventPublisher()
        c = FilesConnector(
            "drop",
            conn(
                tmp_path,
                settle_ms=400,
                csv={"timestamp_format": "epoch_s", "identity": "m"},
            ),
        )
        await c.start(pub)
        path = tmp_path / "slow.csv"
        with open(path, "w") as f:
            for a, b in itertools.pairwise(cuts):
                f.write(text[a:b])
                f.flush()
                await asyncio.sleep(0.08)
                assert readings(pub) == [] and dead(pub) == []
        await until(lambda: len(readings(pub)) == 40)
        await asyncio.sleep(0.1)
        await c.stop()
        return pub

    pub = asyncio.run(main())
    assert sorted(readings(pub)) == [
        ("m", "v", (1_700_000_000 + i) * 10**6, i + 0.5) for i in range(40)
    ]
    assert dead(pub) == []


# -- after reading -------------------------------------------------------------------------
def _ts_file(path: Path, start: int, n: int) -> list[Reading]:
    write(path, "timestamp,v\n" + "".join(f"{start + i},{i}\n" for i in range(n)))
    return [("m", "v", (start + i) * 10**6, float(i)) for i in range(n)]


EPOCH_CSV = {"timestamp_format": "epoch_s", "identity": "m"}


def test_delete_move_and_mark(tmp_path: Path) -> None:
    async def main() -> None:
        # delete
        d = tmp_path / "del"
        want = _ts_file(d / "a.csv", 100, 3)
        pub = await run_until(
            FilesConnector("d", conn(d, after="delete", csv=EPOCH_CSV)),
            lambda p: len(readings(p)) == 3 and not (d / "a.csv").exists(),
        )
        assert sorted(readings(pub)) == want

        # move, twice the same name: the second one is kept beside the first
        m = tmp_path / "mv"
        done = tmp_path / "done"
        _ts_file(m / "x.csv", 100, 2)
        c = FilesConnector("m", conn(m, after="move", done_directory=str(done), csv=EPOCH_CSV))
        pub = MemoryEventPublisher()
        await c.start(pub)
        await until(lambda: (done / "x.csv").exists() and not (m / "x.csv").exists())
        _ts_file(m / "x.csv", 200, 2)
        await until(lambda: (done / "x.1.csv").exists() and not (m / "x.csv").exists())
        await until(lambda: len(readings(pub)) == 4)
        await c.stop()
        assert (done / "x.csv").read_text().splitlines()[1] == "100,0"
        assert (done / "x.1.csv").read_text().splitlines()[1] == "200,0"

        # mark: kept, in the ledger, not read again
        k = tmp_path / "mark"
        _ts_file(k / "y.csv", 100, 2)
        c = FilesConnector("k", conn(k, csv=EPOCH_CSV))
        pub = MemoryEventPublisher()
        await c.start(pub)
        await until(lambda: len(readings(pub)) == 2)
        await asyncio.sleep(0.3)  # many polls
        await c.stop()
        assert len(readings(pub)) == 2 and (k / "y.csv").exists()
        ledger = [json.loads(x) for x in (k / ".millrace" / "ledger.jsonl").read_text().split()]
        assert [(r["path"], r["status"], r["rows"], r["readings"]) for r in ledger] == [
            ("y.csv", "done", 2, 2)
        ]

    asyncio.run(main())


def test_restart_reads_new_files_only_and_a_modified_file_again(tmp_path: Path) -> None:
    state = tmp_path / "state"

    def make() -> FilesConnector:
        return FilesConnector("drop", conn(tmp_path / "in", state_dir=str(state), csv=EPOCH_CSV))

    async def main() -> None:
        a = _ts_file(tmp_path / "in" / "a.csv", 100, 3)
        pub = await run_until(make(), lambda p: len(readings(p)) == 3)
        assert sorted(readings(pub)) == a

        b = _ts_file(tmp_path / "in" / "b.csv", 200, 2)
        c = make()
        pub = MemoryEventPublisher()
        await c.start(pub)
        await until(lambda: len(readings(pub)) == 2)
        await asyncio.sleep(0.3)
        assert sorted(readings(pub)) == b  # a.csv is not read again

        # a.csv modified after it was read: a new file, read whole again (documented)
        with open(tmp_path / "in" / "a.csv", "a") as f:
            f.write("103,3\n")
        await until(lambda: len(readings(pub)) == 6)
        await c.stop()
        assert sorted(readings(pub)) == sorted([*b, *a, ("m", "v", 103 * 10**6, 3.0)])

    asyncio.run(main())


class SlowPublisher(MemoryEventPublisher):
    """Telemetry takes ``delay`` s to be acknowledged (recorded once acknowledged)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        if topic == "telemetry":
            await asyncio.sleep(self.delay)
        await super().publish(topic, events)


def test_stop_in_the_middle_of_a_file_resumes_without_duplicates(tmp_path: Path) -> None:
    def make() -> FilesConnector:
        c = FilesConnector("drop", conn(tmp_path, csv=EPOCH_CSV))
        c.chunk_rows = 3
        return c

    async def main() -> tuple[list[Reading], list[Reading]]:
        want = _ts_file(tmp_path / "big.csv", 100, 10)
        first = SlowPublisher(0.2)
        c = make()
        await c.start(first)
        await until(lambda: len(readings(first)) >= 3)
        await c.stop()  # while the next chunk is being published
        assert (tmp_path / ".millrace" / "progress.json").exists()
        c = make()
        second = await run_until(c, _files_read(c, 1))
        assert sorted(readings(first) + readings(second)) == want
        assert not (tmp_path / ".millrace" / "progress.json").exists()
        return readings(first), readings(second)

    one, two = asyncio.run(main())
    assert one and two and len(one) % 3 == 0


class Failing(MemoryEventPublisher):
    """The log is down while ``fail``."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        if self.fail:
            raise ConnectionError("log down")
        await super().publish(topic, events)


def test_a_file_is_done_once_its_readings_are_spooled_while_the_log_is_down(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        want = _ts_file(tmp_path / "in" / "a.csv", 100, 3)
        pub = Failing()
        c = FilesConnector(
            "drop", conn(tmp_path / "in", after="delete", csv=EPOCH_CSV), spool_dir=tmp_path / "sp"
        )
        await c.start(pub)
        await until(
            lambda: c.metrics()["files_read"] == 1 and not (tmp_path / "in" / "a.csv").exists()
        )
        assert readings(pub) == [] and c.metrics()["buffered_events"] > 0
        assert list((tmp_path / "sp").glob("*.seg"))
        pub.fail = False
        await until(lambda: len(readings(pub)) == 3)
        await c.stop()
        assert sorted(readings(pub)) == want

    asyncio.run(main())


# -- bad input -----------------------------------------------------------------------------
def test_malformed_lines_go_to_dead_letters_and_the_rest_is_read(tmp_path: Path) -> None:
    lines = [
        b"timestamp,a,b\n",
        b"100,1,2\n",  # 2
        b"101,1\n",  # 3: a column short
        b"102,x,2\n",  # 4: not a number
        b"yesterday,1,2\n",  # 5: not a time
        b"103,\xff\xfe,2\n",  # 6: not UTF-8
        b"104,1,2,3\n",  # 7: a column too many
        b"\n",  # 8: blank, skipped
        b'105,"4,5",6\n',  # 9: quoted, but 4,5 is not a number here
        b"106,7,8\n",  # 10
    ]
    (tmp_path / "bad.csv").write_bytes(b"".join(lines))
    c = FilesConnector("drop", conn(tmp_path, csv=EPOCH_CSV))
    pub = asyncio.run(run_until(c, lambda p: len(readings(p)) == 4 and len(dead(p)) == 6))
    assert sorted(readings(pub)) == [
        ("m", "a", 100 * 10**6, 1.0),
        ("m", "a", 106 * 10**6, 7.0),
        ("m", "b", 100 * 10**6, 2.0),
        ("m", "b", 106 * 10**6, 8.0),
    ]
    got = [(k, e["payload"], e["error_type"], e["key"], e["reason"]) for k, e in dead(pub)]
    assert [g[:4] for g in got] == [
        ("bad.csv", lines[n - 1].rstrip(b"\n"), "DecodeError", b"bad.csv")
        for n in (3, 4, 5, 6, 7, 9)
    ]
    reasons = [g[4] for g in got]
    assert reasons[0] == "bad.csv line 3: expected 3 columns, got 2"
    assert reasons[1] == "bad.csv line 4: column 'a': not a number: 'x'"
    assert reasons[2] == "bad.csv line 5: time 'yesterday' is not an epoch_s number"
    assert reasons[3].startswith("bad.csv line 6: not utf-8")
    assert reasons[4] == "bad.csv line 7: expected 3 columns, got 4"
    assert reasons[5] == "bad.csv line 9: column 'a': not a number: '4,5'"
    assert c.metrics()["bad_lines"] == 6 and c.metrics()["files_read"] == 1


def test_a_file_without_the_configured_columns_is_dead_lettered_whole(tmp_path: Path) -> None:
    write(tmp_path / "other.csv", "time,v\n100,1\n")
    write(tmp_path / "good.csv", "timestamp,v,w\n100,1,2\n")

    async def main() -> tuple[MemoryEventPublisher, FilesConnector]:
        c = FilesConnector(
            "drop", conn(tmp_path, csv=EPOCH_CSV), [ep("m", "v"), ep("m", "w2", column="w2")]
        )
        pub = await run_until(
            c,
            lambda p: (
                len(readings(p)) == 1 and len(dead(p)) == 1 and len(states(p, "endpoint")) == 2
            ),
        )
        return pub, c

    pub, c = asyncio.run(main())
    assert readings(pub) == [("m", "v", 100 * 10**6, 1.0)]
    ((_, e),) = dead(pub)
    assert e["error_type"] == "FileFormatError" and e["payload"] == b"time,v"
    assert e["reason"] == "other.csv line 1: timestamp column 'timestamp' is not in the header"
    assert (tmp_path / "other.csv").exists()
    eps = {
        e["resource_id"]: (e["current_state"], e["info"])
        for _, e in pub.published["status"]
        if e["resource_type"] == "endpoint"
    }
    assert eps == {
        "files:drop/m/v": ("running", ""),
        "files:drop/m/w2": ("error", "column 'w2' is not in the file: good.csv"),
    }
    assert c.metrics()["files_failed"] == 1


def test_missing_directory_is_an_error_until_it_appears(tmp_path: Path) -> None:
    d = tmp_path / "not-yet"

    async def main() -> MemoryEventPublisher:
        pub = MemoryEventPublisher()
        c = FilesConnector("drop", conn(d, csv=EPOCH_CSV))
        await c.start(pub)
        await until(lambda: ("error", f"Directory not found: {d}") in states(pub))
        assert c.state == ("error", f"Directory not found: {d}")
        _ts_file(d / "a.csv", 100, 2)
        await until(lambda: c.state[0] == "running" and len(readings(pub)) == 2)
        await c.stop()
        return pub

    pub = asyncio.run(main())
    assert sorted(readings(pub)) == [("m", "v", 100 * 10**6, 0.0), ("m", "v", 101 * 10**6, 1.0)]


# -- time that goes back -------------------------------------------------------------------
def test_overlapping_files_are_all_read_unless_only_newer(tmp_path: Path) -> None:
    async def main() -> None:
        d = tmp_path / "keep"
        one = _ts_file(d / "1.csv", 110, 10)  # 110..119
        two = _ts_file(d / "2.csv", 100, 15)  # 100..114: earlier and overlapping
        pub = await run_until(
            FilesConnector("k", conn(d, csv=EPOCH_CSV)), lambda p: len(readings(p)) == 25
        )
        assert sorted(readings(pub)) == sorted(one + two)

        n = tmp_path / "newer"
        state = str(tmp_path / "newer-state")
        one = _ts_file(n / "1.csv", 110, 10)
        _ts_file(n / "2.csv", 100, 15)
        c = FilesConnector("n", conn(n, only_newer=True, state_dir=state, csv=EPOCH_CSV))
        pub = await run_until(c, lambda p: c.metrics()["files_read"] == 2)
        assert sorted(readings(pub)) == one
        # the watermark survives a restart: only times after 119 s are new
        three = _ts_file(n / "3.csv", 115, 10)  # 115..124
        c = FilesConnector("n", conn(n, only_newer=True, state_dir=state, csv=EPOCH_CSV))
        pub = await run_until(c, lambda p: c.metrics()["files_read"] == 1)
        assert sorted(readings(pub)) == three[5:]

    asyncio.run(main())


def _files_read(c: FilesConnector, n: int) -> Callable[[MemoryEventPublisher], bool]:
    return lambda _: c.metrics()["files_read"] == n


def test_files_are_read_in_name_or_mtime_order(tmp_path: Path) -> None:
    class Order(FilesConnector):
        seen: list[str]

        async def _ingest(self, item: Any, key: Any, data: bytes) -> None:
            self.seen.append(item.rel)
            await super()._ingest(item, key, data)

    async def main() -> tuple[list[str], list[str]]:
        d = tmp_path / "d"
        for i, name in enumerate(["c.csv", "a.csv", "b.csv"]):
            _ts_file(d / name, 100, 1)
            os.utime(d / name, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
        out = []
        for order in ("name", "mtime"):
            c = Order("o", conn(d, order=order, state_dir=str(tmp_path / order), csv=EPOCH_CSV))
            c.seen = []
            await run_until(c, _files_read(c, 3))
            out.append(c.seen)
        return out[0], out[1]

    by_name, by_mtime = asyncio.run(main())
    assert by_name == ["a.csv", "b.csv", "c.csv"]
    assert by_mtime == ["c.csv", "a.csv", "b.csv"]
