"""The task fold (pipeline.tasks.state): the lifecycle, totals, and that an event
landing twice (an append retried) or a batch redone changes nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.tasks.events import task_event
from millrace.pipeline.tasks.state import apply, file_counts, normalise, params_of


def fold(events: list[dict[str, Any]], start: int = 0) -> dict[str, Any] | None:
    state = None
    for i, ev in enumerate(events):
        state = apply(state, ev, start + i + 1)
    return state


def ev(type_: str, ts: int, **kw: Any) -> dict[str, Any]:
    return task_event("t1", "restore", type_, ts_us=ts, **kw)


def test_lifecycle_failed_file_then_retry() -> None:
    events = [
        ev("created", 1, actor="ops", params={"start_time": 5}),
        ev("started", 2),
        ev("progress", 3, file="a", counts={"events": 4}),
        ev("file_completed", 4, file="a", counts={"events": 10, "readings": 100}),
        ev("progress", 5, file="b", counts={"events": 2}),
        ev("file_failed", 6, file="b", error="b: wrong checksum"),
        ev("failed", 7, error="1 file(s) failed: b"),
    ]
    s = fold(events)
    assert s is not None
    assert (s["status"], s["attempts"], s["actor"]) == ("failed", 1, "ops")
    assert params_of(s) == {"start_time": 5}
    assert s["files_failed"] == {"b": "b: wrong checksum"}
    assert file_counts(s, "a") == {"events": 10, "readings": 100}
    assert s["counts"] == {"events": 10, "readings": 100}  # b's progress dropped
    assert s["error"] == "1 file(s) failed: b"
    more = [
        ev("retried", 8, actor="ops2"),
        ev("started", 9),
        ev("file_completed", 10, file="b", counts={"events": 1, "readings": 7}),
        ev("completed", 11),
    ]
    for i, e in enumerate(more):
        s = apply(s, e, len(events) + i + 1)
    assert (s["status"], s["attempts"], s["error"], s["finished_us"]) == ("completed", 2, "", 11)
    assert s["files_failed"] == {}
    assert s["counts"] == {"events": 11, "readings": 107}
    assert s["actor"] == "ops"  # the creator, not the one who retried


def test_terminal_states_ignore_late_steps() -> None:
    s = fold([ev("created", 1), ev("started", 2), ev("completed", 3), ev("failed", 4)])
    assert s is not None and s["status"] == "completed"
    s2 = fold([ev("created", 1), ev("retried", 2)])
    assert s2 is not None and s2["status"] == "pending"  # retry of a pending task: nothing


def test_an_event_at_or_below_the_version_is_skipped() -> None:
    s = fold([ev("created", 1), ev("started", 2)])
    assert s is not None
    again = apply(s, ev("file_completed", 3, file="x", counts={"events": 1}), 2)
    assert again == normalise(s)


def test_state_reads_back_from_map_pairs() -> None:
    s = fold(
        [ev("created", 1), ev("started", 2), ev("file_completed", 3, file="a", counts={"e": 2})]
    )
    assert s is not None
    as_row = {k: (list(v.items()) if isinstance(v, dict) else v) for k, v in s.items()}
    assert normalise(as_row) == s


_STEPS = st.sampled_from(
    [
        "created",
        "started",
        "progress",
        "file_completed",
        "file_failed",
        "completed",
        "failed",
        "retried",
    ]
)


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i, kind in enumerate(draw(st.lists(_STEPS, max_size=25))):
        f = draw(st.sampled_from(["a", "b", "c"]))
        n = draw(st.integers(0, 50))
        out.append(ev(kind, i + 1, file=f, counts={"events": n}, error=f"{f} bad"))
    return out


@settings(max_examples=200, deadline=None)
@given(histories(), st.data())
def test_a_duplicated_append_changes_nothing(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    """An event appended twice in a row (a retried append) folds as if once."""
    doubled: list[dict[str, Any]] = []
    for e in events:
        doubled.append(e)
        if data.draw(st.booleans()):
            doubled.append(e)
    once, twice = fold(events), fold(doubled)
    if once is None or twice is None:
        assert once is twice
        return
    once.pop("version"), twice.pop("version")
    assert once == twice


@settings(max_examples=100, deadline=None)
@given(histories(), st.integers(0, 25))
def test_a_redone_prefix_changes_nothing(events: list[dict[str, Any]], cut: int) -> None:
    """Refolding events already in the state (same offsets) changes nothing."""
    state = fold(events)
    if state is None:
        return
    for i, e in enumerate(events[:cut]):
        state = apply(state, e, i + 1)
    assert state == fold(events)
