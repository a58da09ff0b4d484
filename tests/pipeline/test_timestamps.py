"""One timestamp-bounds rule (issue 13, item 3): ``pipeline.timestamps`` states the times
an event may carry, and ingest, the connectors, the telemetry processor and the
evaluator all refuse the same ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from millrace.connectors.files.config import CsvOptions
from millrace.connectors.files.csvparse import BadLine, CsvFile, Row
from millrace.connectors.mqtt.payload import DecodeError, timestamp_us
from millrace.pipeline.alarms.evaluator import Evaluator
from millrace.pipeline.alarms.rules import parse_rule, rule_event
from millrace.pipeline.processors.telemetry import _check_batch
from millrace.pipeline.timestamps import (
    MAX_QUERY_US,
    MAX_TS_US,
    MIN_QUERY_US,
    MIN_TS_US,
    ts_problem,
    valid_ts,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
EDGES = [MIN_TS_US - 1, MIN_TS_US, MAX_TS_US - 1, MAX_TS_US]


def _us(year: int) -> int:
    return int((datetime(year, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * 1_000_000


def test_the_bounds_are_the_years_they_claim() -> None:
    assert (_us(1970), _us(2200)) == (MIN_TS_US, MAX_TS_US)
    assert (_us(1900), _us(2300)) == (MIN_QUERY_US, MAX_QUERY_US)
    assert MIN_QUERY_US < MIN_TS_US < MAX_TS_US < MAX_QUERY_US


@pytest.mark.parametrize(
    ("ts", "problem"),
    [
        (0, None),
        (MAX_TS_US - 1, None),
        (-1, "-1 is outside [1970, 2200)"),
        (MAX_TS_US, "outside [1970, 2200)"),
        (True, "not an integer"),
        (1.5, "not an integer"),
        (None, "not an integer"),
    ],
)
def test_ts_problem(ts: object, problem: str | None) -> None:
    got = ts_problem(ts)
    assert valid_ts(ts) is (problem is None)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


@pytest.mark.parametrize("ts", EDGES)
def test_the_telemetry_processor_follows_the_rule(ts: int) -> None:
    batch = {"identity": "d", "samples": [{"ts_us": ts, "values": {"x": 1.0}}]}
    assert (_check_batch(batch) is None) is valid_ts(ts)


@pytest.mark.parametrize("ts", EDGES)
def test_mqtt_payload_times_follow_the_rule(ts: int) -> None:
    if valid_ts(ts):
        assert timestamp_us(ts, "epoch_us") == ts
    else:
        with pytest.raises(DecodeError, match=re.escape("outside [1970, 2200)")):
            timestamp_us(ts, "epoch_us")


@pytest.mark.parametrize("ts", EDGES)
def test_csv_rows_follow_the_rule(ts: int) -> None:
    o = CsvOptions.model_validate(
        {"timestamp": "t", "timestamp_format": "epoch_us", "identity": "press-1"}
    )
    (row,) = list(CsvFile(f"t,x\n{ts},1\n".encode(), o, ()).rows())
    if valid_ts(ts):
        assert isinstance(row, Row) and row.ts_us == ts
    else:
        assert isinstance(row, BadLine) and "outside [1970, 2200)" in row.reason


@pytest.mark.parametrize("ts", EDGES)
def test_the_evaluator_judges_only_readings_in_range(ts: int) -> None:
    ev = Evaluator()
    rule = {"id": "hot", "kind": "limit", "signal": "x", "high": 10}
    ev.on_event("alarms", rule_event(parse_rule(rule), "hot", 1, "test"))
    batch = {
        "identity": "d",
        "received_us": MAX_TS_US,
        "samples": [{"ts_us": ts, "quality": 0, "values": {"x": 99.0}}],
    }
    raised = [e for e in ev.on_event("telemetry", batch) if e.get("type") == "RAISED"]
    assert bool(raised) is valid_ts(ts)


def test_no_module_states_its_own_bounds() -> None:
    """The event bound (and the year-9999 one two connectors used) lives only in
    pipeline/timestamps.py. (csvparse's year 1..9999 guard is datetime arithmetic while
    parsing, not an event bound: its rows are then checked with ``ts_problem``.)"""
    own = re.compile(r"7_?258_?118_?400|253_?402_?300_?799|datetime\(2200,")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for pkg in ("pipeline", "connectors", "projections", "api")
        for path in sorted((ROOT / pkg).rglob("*.py"))
        if path.relative_to(ROOT).as_posix() != "pipeline/timestamps.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if own.search(line)
    ]
    assert offenders == []
