"""What the console's operations pages compute from the API's answers, without a
browser: an alarm's history, task lines, the SQL chart, desired-state words and values,
a service's endpoint identities."""

from __future__ import annotations

from typing import Any

import pytest

from millrace.api.console.pages.alarms import history_items
from millrace.api.console.pages.archive import task_row
from millrace.api.console.pages.identity import parse_value, state_word
from millrace.api.console.pages.services import endpoint_identities
from millrace.api.console.pages.sql import chart_of, is_number, is_time, to_csv


def alarm(**management: Any) -> dict[str, Any]:
    base = {
        "status": "pending",
        "acknowledged_by": None,
        "acknowledged_time": None,
        "acknowledge_note": None,
        "discarded_by": None,
        "discarded_time": None,
        "discard_note": None,
    }
    return {
        "creation_time": "2026-01-01T00:00:01Z",
        "trigger_value": 91.5,
        "clear_time": "2026-01-01T00:00:09Z",
        "clear_value": 70.0,
        "management": {**base, **management},
    }


def test_alarm_history_in_time_order_with_notes_and_audits() -> None:
    a = alarm(
        status="acknowledged",
        acknowledged_by="user:ann",
        acknowledged_time="2026-01-01T00:00:05Z",
        acknowledge_note="on it",
    )
    notes = [{"time": "2026-01-01T00:00:03Z", "user": "user:bob", "text": "valve?"}]
    audits = [
        {
            "creation_time": "2026-01-01T00:00:05Z",
            "action": "acknowledge",
            "actor": "user:ann",
            "status": "ok",
        }
    ]
    got = history_items(a, notes, audits)
    assert [t for t, _ in got] == sorted(t for t, _ in got)
    assert [w for _, w in got] == [
        "raised at value 91.5",
        "annotated by user:bob: valve?",
        "acknowledged by user:ann: on it",
        "audit: acknowledge by user:ann → ok",
        "cleared at value 70.0",
    ]


def test_alarm_history_of_a_fresh_alarm() -> None:
    a = alarm()
    a["clear_time"] = None
    assert history_items(a, [], []) == [("2026-01-01T00:00:01Z", "raised at value 91.5")]


def test_task_row_names_done_and_failed_files() -> None:
    row = task_row(
        {
            "task_id": "t1",
            "status": "failed",
            "progress": {"readings": 1200, "phase": "files"},
            "files": [{"file": "a.avro"}],
            "errors": [{"file": "b.avro", "reason": "checksum"}],
            "error": None,
            "params": {"start_time_us": 1},
            "created": "2026-01-01T00:00:00.5Z",
            "finished": None,
            "attempts": 2,
        }
    )
    assert row["progress"] == "1 file(s) done, 1 failed; readings 1,200, phase files"
    assert row["problem"] == "b.avro: checksum"
    assert row["created"] == "2026-01-01 00:00:00" and row["finished"] == ""


@pytest.mark.parametrize(
    ("kind", "time", "number"),
    [
        ("DateTime64(6, 'UTC')", True, False),
        ("Nullable(DateTime('UTC'))", True, False),
        ("Date", True, False),
        ("Float64", False, True),
        ("Nullable(LowCardinality(UInt32))", False, True),
        ("LowCardinality(String)", False, False),
    ],
)
def test_column_kinds(kind: str, time: bool, number: bool) -> None:
    assert (is_time(kind), is_number(kind)) == (time, number)


def test_chart_of_a_long_format_result_has_a_line_per_label() -> None:
    columns = [
        {"name": "minute", "type": "DateTime('UTC')"},
        {"name": "signal", "type": "LowCardinality(String)"},
        {"name": "average", "type": "Float64"},
    ]
    rows = [
        ["2026-01-01 00:00:00", "a", 1.0],
        ["2026-01-01 00:00:00", "b", 2.0],
        ["2026-01-01 00:01:00", "a", 3.0],
    ]
    options = chart_of(columns, rows)
    assert options is not None
    lines = {s["name"]: s["data"] for s in options["series"]}
    assert lines == {
        "a": [["2026-01-01T00:00:00Z", 1.0], ["2026-01-01T00:01:00Z", 3.0]],
        "b": [["2026-01-01T00:00:00Z", 2.0]],
    }
    assert all(s["sampling"] == "lttb" for s in options["series"])


def test_no_chart_without_a_time_and_a_number() -> None:
    assert chart_of([{"name": "n", "type": "UInt64"}], [[1]]) is None
    assert chart_of([{"name": "t", "type": "DateTime"}], [["2026-01-01 00:00:00"]]) is None


def test_csv_of_a_result() -> None:
    text = to_csv([{"name": "a", "type": "String"}, {"name": "b", "type": "Int8"}], [["x,y", 1]])
    assert text.splitlines() == ["a,b", '"x,y",1']


@pytest.mark.parametrize(
    ("state", "word"),
    [
        ({"set": None, "pending": False}, "reported only"),
        ({"set": 5, "pending": True}, "pending"),
        ({"set": 5, "pending": False, "timed_out_us": 9}, "timed out"),
        ({"set": 5, "pending": False, "acknowledged_us": 9}, "acknowledged"),
        ({"set": 5, "pending": False}, "set"),
    ],
)
def test_state_word(state: dict[str, Any], word: str) -> None:
    assert state_word(state) == word


@pytest.mark.parametrize(
    ("text", "fmt", "value"),
    [
        ("42", "number", 42),
        ("42.5", "number", 42.5),
        ("4.0", "number", 4.0),
        ("abc", "number", "abc"),  # the API refuses it, naming the resource
        ("true", "boolean", True),
        ("off", "boolean", False),
        ("42", "string", "42"),
    ],
)
def test_parse_value(text: str, fmt: str, value: Any) -> None:
    got = parse_value(text, fmt)
    assert got == value and type(got) is type(value)


def test_endpoint_identities_leave_templated_ones_out() -> None:
    file = {
        "endpoints": [
            {"identity": "press-2"},
            {"identity": "press-{1}"},
            {"identity": "line-*"},
            {"identity": "press-2"},
            {"identity": "oven"},
        ]
    }
    assert endpoint_identities(file) == ["oven", "press-2"]
    assert endpoint_identities({}) == []
