"""The alarm projection (pipeline.processors.alarms): the fold of AlarmEvents into
alarms, annotations and rules, checked against an independent model of the lifecycle,
over batches that are redone or crash halfway; duplicates change nothing; refused steps
become dead letters."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.alarms.rules import parse_rule, rule_event
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.processors.alarms import AlarmProcessor
from millrace.pipeline.processors.base import Event
from millrace.pipeline.sink import MemoryProjectionSink, Range, SinkBatch
from millrace.projections.alarms import AlarmFilter, AlarmQueries
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

TP = TopicPartition("alarms", 0)


def uid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


CONSUMER = "alarms-test"
IDS = ("a1", "a2", "a3")
STEPS = ("RAISED", "CLEARED", "ACKNOWLEDGED", "DISCARDED", "ANNOTATED")
GOOD_RULE = {"id": "r1", "kind": "limit", "signal": "temp", "high": 80, "low": 10}
#: low >= high: refused by the processor
BAD_RULE_JSON = json.dumps({"id": "r1", "kind": "limit", "signal": "temp", "high": 1, "low": 5})


def step(
    alarm_id: str,
    kind: str,
    ts_us: int,
    *,
    user: str | None = None,
    note: str | None = None,
    value: Any = None,
    priority: int = 50,
    requires_ack: bool = True,
) -> dict[str, Any]:
    return {
        "alarm_id": alarm_id,
        "ts_us": ts_us,
        "type": kind,
        "rule_id": "r1",
        "rule_type": "high_temp",
        "identity": "dev-1",
        "signal": "temp",
        "priority": priority,
        "message": f"{alarm_id} {kind}",
        "trigger_value": value,
        "user": user,
        "note": note,
        "requires_ack": requires_ack,
        "definition": None,
    }


def rule_step(ts_us: int, removed: bool = False, bad: bool = False) -> dict[str, Any]:
    ev = rule_event(None if removed else parse_rule(GOOD_RULE), "r1", ts_us, "admin")
    if bad:
        ev["definition"] = BAD_RULE_JSON
    return ev


# -- the model ----------------------------------------------------------------------------


def model(
    log: list[dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[Any]], set[int], dict[str, Any]]:
    """(alarms, annotations per alarm, refused offsets, rule) of one clean pass,
    written from the lifecycle rules directly."""
    alarms: dict[str, dict[str, Any]] = {}
    notes: dict[str, list[tuple[int, int, str, str]]] = {}
    refused: set[int] = set()
    rule: dict[str, Any] = {}
    for offset, ev in enumerate(log):
        kind, aid, ts = ev["type"], ev["alarm_id"], ev["ts_us"]
        user, note = ev["user"] or "", ev["note"] or ""
        if kind in ("RULE_DEFINED", "RULE_REMOVED"):
            if kind == "RULE_DEFINED" and ev["definition"] == BAD_RULE_JSON:
                refused.add(offset)
            else:
                rule = {"version": offset + 1, "present": int(kind == "RULE_DEFINED")}
            continue
        a = alarms.get(aid)
        if kind == "RAISED":
            if a is None:
                alarms[aid] = {
                    "version": offset + 1,
                    "state": "active",
                    "raised_us": ts,
                    "cleared_us": 0,
                    "mgmt_status": "pending",
                    "ack": (0, "", ""),
                    "discard": (0, "", ""),
                    "annotation_count": 0,
                    "priority": ev["priority"],
                    "trigger": ev["trigger_value"],
                    "clear": None,
                    "updated_us": ts,
                }
                notes[aid] = []
            continue
        if a is None or kind not in STEPS:
            refused.add(offset)
            continue
        changed = False
        if kind == "CLEARED":
            if a["state"] == "active":
                a.update(state="cleared", cleared_us=ts, clear=ev["trigger_value"])
                changed = True
        elif kind == "ACKNOWLEDGED":
            repeat = a["mgmt_status"] == "acknowledged" and a["ack"] == (ts, user, note)
            if not repeat:
                if a["mgmt_status"] == "pending":
                    a.update(mgmt_status="acknowledged", ack=(ts, user, note))
                    changed = True
                else:
                    refused.add(offset)
        elif kind == "DISCARDED":
            if a["mgmt_status"] == "discarded":
                if a["discard"] != (ts, user, note):
                    refused.add(offset)
            else:
                a.update(mgmt_status="discarded", discard=(ts, user, note))
                changed = True
        else:  # ANNOTATED
            if ev["note"] is None:
                refused.add(offset)
            elif not notes[aid] or notes[aid][-1][1:] != (ts, user, note):
                notes[aid].append((offset + 1, ts, user, note))
                a["annotation_count"] += 1
                changed = True
        if changed:
            a.update(version=offset + 1, updated_us=ts)
    return alarms, {k: list(v) for k, v in notes.items()}, refused, rule


def view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored alarm row in the model's terms."""
    return {
        "version": int(row["version"]),
        "state": row["state"],
        "raised_us": int(row["raised_us"]),
        "cleared_us": int(row["cleared_us"]),
        "mgmt_status": row["mgmt_status"],
        "ack": (int(row["ack_us"]), row["ack_user"], row["ack_note"]),
        "discard": (int(row["discard_us"]), row["discard_user"], row["discard_note"]),
        "annotation_count": int(row["annotation_count"]),
        "priority": int(row["priority"]),
        "trigger": json.loads(row["trigger_value"]),
        "clear": json.loads(row["clear_value"]) if row["clear_value"] else None,
        "updated_us": int(row["updated_us"]),
    }


# -- running the processor ----------------------------------------------------------------


def as_event(offset: int, value: Mapping[str, Any]) -> Event:
    key = value["alarm_id"]
    if value["type"].startswith("RULE_"):
        key = f"rule:{key}"
    return Event("alarms", 0, offset, value["ts_us"], str(key).encode(), value)


def project(
    log: list[dict[str, Any]], cuts: list[tuple[int, str, int]]
) -> tuple[MemoryProjectionSink, list[int]]:
    """Run the processor over ``log`` in batches of the ``cuts`` sizes: "redo" writes a
    batch twice, "crash" dies after N steps of the write and redoes the batch from
    whatever state landed. Returns the sink and the dead letters' offsets."""
    proc = AlarmProcessor()
    sink = MemoryProjectionSink()
    dead: list[int] = []
    start, seq, i = 0, 0, 0
    while start < len(log):
        size, mode, crash_after = cuts[i % len(cuts)]
        i += 1
        end = min(len(log), start + size)
        seq += 1
        events = [as_event(o, log[o]) for o in range(start, end)]

        def run(
            events: list[Event] = events, start: int = start, end: int = end, seq: int = seq
        ) -> SinkBatch:
            out = proc.process_with_state(
                events, sink.load_state("alarms", "alarm_id", proc.state_keys(events))
            )
            offsets = [dl["source_offset"] for dl in out.deadletters]
            assert all(start <= o < end for o in offsets)
            dead.extend(offsets)
            names = list(out.tables)
            if names:  # the state table is written last (see the processor's doc)
                assert names[-1] == "alarms", names
            return SinkBatch(seq, {TP: Range(start, end)}, out.tables)

        batch = run()
        if mode == "crash":
            sink.fail_after = crash_after
            try:
                sink.write(CONSUMER, batch)
            except RuntimeError as exc:
                assert "injected" in str(exc)
            sink.fail_after = None
            sink.write(CONSUMER, run())
        else:
            sink.write(CONSUMER, batch)
            if mode == "redo":
                before = {k: list(v) for k, v in sink.rows.items()}
                sink.write(CONSUMER, run())
                assert sink.rows == before
        assert sink.progress(CONSUMER).positions == {TP: end}
        start = end
    return sink, dead


def alarm_states(sink: MemoryProjectionSink) -> dict[str, dict[str, Any]]:
    return {k: view(v) for k, v in sink.load_state("alarms", "alarm_id", list(IDS)).items()}


def annotations(sink: MemoryProjectionSink) -> dict[str, list[tuple[int, int, str, str]]]:
    rows = sink.rows.get("alarm_annotations", [])
    keys = [(r["alarm_id"], r["seq"]) for r in rows]
    assert len(keys) == len(set(keys)), "an annotation row was written twice"
    out: dict[str, list[tuple[int, int, str, str]]] = {}
    for r in sorted(rows, key=lambda r: (str(r["alarm_id"]), int(r["seq"]))):
        out.setdefault(str(r["alarm_id"]), []).append(
            (int(r["seq"]), int(r["ts_us"]), str(r["user"]), str(r["text"]))
        )
    return out


def latest_rule(sink: MemoryProjectionSink) -> dict[str, Any]:
    rows = sink.rows.get("alarm_rules", [])
    if not rows:
        return {}
    best = max(rows, key=lambda r: int(r["version"]))
    return {"version": int(best["version"]), "present": int(best["present"])}


# -- strategies ---------------------------------------------------------------------------

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=4),
)


@st.composite
def alarm_log(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Steps of a few alarms, with small sets of times, users and notes so that repeats
    and conflicts are frequent; some rule events; some verbatim repeats."""
    out: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 40))):
        choice = draw(st.integers(0, 19))
        if choice == 0:
            out.append(
                rule_step(
                    draw(st.integers(0, 3)), removed=draw(st.booleans()), bad=draw(st.booleans())
                )
            )
            continue
        if choice == 1 and out:
            out.append(dict(out[draw(st.integers(0, len(out) - 1))]))  # a repeated append
            continue
        kind = draw(st.sampled_from((*STEPS, "RAISED", "UNKNOWN")))
        out.append(
            step(
                draw(st.sampled_from(IDS)),
                kind,
                draw(st.integers(0, 3)),
                user=draw(st.sampled_from((None, "ann", "bob"))),
                note=draw(st.sampled_from((None, "n1", "n2"))),
                value=draw(values),
                priority=draw(st.integers(0, 255)),
                requires_ack=draw(st.booleans()),
            )
        )
    return out


modes = st.sampled_from(["plain", "plain", "redo", "crash"])
cut_lists = st.lists(st.tuples(st.integers(1, 8), modes, st.integers(1, 5)), min_size=1)


@settings(max_examples=80, deadline=None)
@given(log=alarm_log(), cuts=cut_lists)
def test_fold_matches_the_model_over_batches_redos_and_crashes(
    log: list[dict[str, Any]], cuts: list[tuple[int, str, int]]
) -> None:
    sink, dead = project(log, cuts)
    want_alarms, want_notes, want_refused, want_rule = model(log)
    assert alarm_states(sink) == want_alarms
    assert annotations(sink) == {k: v for k, v in want_notes.items() if v}
    assert set(dead) == want_refused
    assert latest_rule(sink) == want_rule


@settings(max_examples=40, deadline=None)
@given(log=alarm_log(), cuts=cut_lists)
def test_every_event_appended_twice_changes_nothing(
    log: list[dict[str, Any]], cuts: list[tuple[int, str, int]]
) -> None:
    """A retried append (each event twice in a row) leaves the same alarms and
    annotations as the clean log (versions aside: they are log positions)."""
    once, _ = project(log, [(5, "plain", 1)])
    twice, _ = project([dict(ev) for ev in log for _ in (0, 1)], cuts)

    def strip(states: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: {**v, "version": 0} for k, v in states.items()}

    assert strip(alarm_states(twice)) == strip(alarm_states(once))
    assert {k: [n[1:] for n in v] for k, v in annotations(twice).items()} == {
        k: [n[1:] for n in v] for k, v in annotations(once).items()
    }


def test_lifecycle_and_refusals() -> None:
    log = [
        step("a1", "ACKNOWLEDGED", 1, user="ann"),  # 0 unknown: refused
        step("a1", "RAISED", 2, value=91.5, priority=200),  # 1
        step("a1", "RAISED", 3, value=99.0),  # 2 duplicate raise: no-op
        step("a1", "ANNOTATED", 4, user="ann", note="looking"),  # 3
        step("a1", "ACKNOWLEDGED", 5, user="ann", note="seen"),  # 4
        step("a1", "ACKNOWLEDGED", 6, user="bob"),  # 5 acknowledged already: refused
        step("a1", "CLEARED", 7, value=70.0),  # 6
        step("a1", "CLEARED", 8, value=60.0),  # 7 cleared already: no-op
        step("a1", "DISCARDED", 9, user="bob", note="done"),  # 8
        step("a1", "DISCARDED", 10, user="ann"),  # 9 twice: refused
        step("a1", "ACKNOWLEDGED", 11, user="ann"),  # 10 discarded: refused
        step("a1", "ANNOTATED", 12, user="bob", note="after"),  # 11 still accepted
        step("a2", "DISCARDED", 13, user="bob"),  # 12 unknown: refused
        step("a2", "UNKNOWN", 13),  # 13 unknown type (and alarm): refused
        rule_step(14, bad=True),  # 14 low >= high: refused
        rule_step(15),  # 15
    ]
    sink, dead = project(log, [(100, "plain", 1)])
    assert sorted(dead) == [0, 5, 9, 10, 12, 13, 14]
    (row,) = sink.load_state("alarms", "alarm_id", ["a1"]).values()
    assert row["state"] == "cleared" and row["cleared_us"] == 7
    assert json.loads(row["clear_value"]) == 70.0 and json.loads(row["trigger_value"]) == 91.5
    assert row["mgmt_status"] == "discarded"
    assert (row["ack_user"], row["ack_us"], row["ack_note"]) == ("ann", 5, "seen")
    assert (row["discard_user"], row["discard_us"], row["discard_note"]) == ("bob", 9, "done")
    assert row["annotation_count"] == 2 and row["priority"] == 200
    assert row["version"] == 12
    assert [n[3] for n in annotations(sink)["a1"]] == ["looking", "after"]
    rules = sink.rows["alarm_rules"]
    assert [(r["version"], r["present"]) for r in rules] == [(16, 1)]
    assert json.loads(str(rules[0]["definition"]))["high"] == 80


def test_dead_letter_reasons_name_the_problem() -> None:
    proc = AlarmProcessor()
    events = [
        as_event(0, step("x", "RAISED", 1)),
        as_event(1, step("x", "DISCARDED", 2, user="u")),
        as_event(2, step("x", "ACKNOWLEDGED", 3, user="u")),
        as_event(3, step("y", "ANNOTATED", 3, user="u", note="t")),
        as_event(4, rule_step(5, bad=True)),
    ]
    out = proc.process_with_state(events, {})
    reasons = {d["source_offset"]: d["reason"] for d in out.deadletters}
    assert set(reasons) == {2, 3, 4}
    assert "discarded" in reasons[2]
    assert "unknown" in reasons[3]
    assert "definition.low" in reasons[4]
    assert all(d["error_type"] == "AlarmRejected" for d in out.deadletters)


def test_round_trip_through_clickhouse(chdb_store: ChdbStore) -> None:
    """The rows land in the chDB tables, the state reads back equal to the memory
    sink's, and the read model sees the alarm, its annotations and the rule."""
    aid = uid("alarm-")
    log = [
        step(aid, "RAISED", 10, value="on", priority=7),
        step(aid, "ANNOTATED", 11, user="ann", note="first"),
        step(aid, "ANNOTATED", 12, user="bob", note="second"),
        step(aid, "ACKNOWLEDGED", 13, user="ann", note="ok"),
    ]
    writer = ProjectionWriter(chdb_store)
    proc = AlarmProcessor()
    tp = TopicPartition(uid("alarms-"), 0)
    consumer = uid("consumer-")
    for o, ev in enumerate(log):  # one batch per event: state read back from ClickHouse
        events = [as_event(o, ev)]
        out = proc.process_with_state(
            events, writer.load_state("alarms", "alarm_id", proc.state_keys(events))
        )
        writer.write(consumer, SinkBatch(o + 1, {tp: Range(o, o + 1)}, out.tables))
    mem, _ = project(log, [(1, "plain", 1)])
    assert writer.load_state("alarms", "alarm_id", [aid]) == mem.load_state(
        "alarms", "alarm_id", [aid]
    )
    q = AlarmQueries(chdb_store)
    page = q.list(AlarmFilter(identities=["dev-1"], alarm_ids=[aid]))
    assert [a["alarm_id"] for a in page.rows] == [aid]
    a = page.rows[0]
    assert a["trigger_value"] == "on" and a["mgmt_status"] == "acknowledged"
    assert a["annotation_count"] == 2 and a["open"] is True
    notes, total = q.annotations(aid)
    assert total == 2
    assert [(n["seq"], n["user"], n["text"]) for n in notes] == [
        (1, "ann", "first"),
        (2, "bob", "second"),
    ]
