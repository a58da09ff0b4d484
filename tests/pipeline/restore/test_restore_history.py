"""After a restore, the alarm history, the audit trail and ``latest`` are right (issue
14, item 3: restored data answers through every endpoint), on chDB.

The log holds two alarms (one raised, annotated, cleared and acknowledged; one still
active), audit entries, and readings of two identities in the first hour plus a newer
reading of one of them two hours later. Everything is archived; the projections are
dropped; the later window is restored first, then the first hour. The alarms,
annotations and audits then equal a clean live pass over the same log and the values
written here; ``latest`` keeps the newer reading where there is one (a restored older
value never replaces it) and takes the newest restored one elsewhere; restoring both
windows again changes nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from millrace.pipeline.archive.format import HOUR_US
from millrace.pipeline.codec import default_codec
from millrace.pipeline.events import alarm_event, audit_event
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.restore import RestoreParams
from millrace.pipeline.topics import ALARMS, AUDIT, TELEMETRY
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.store.chdb import ChdbStore
from tests.pipeline.restore.helpers import MINUTE, T0, Runner, archive, live_fold

NEWER = T0 + 2 * HOUR_US + 10 * MINUTE


def alarm(alarm_id: str, type_: str, at: int, **more: Any) -> dict[str, Any]:
    return alarm_event(
        alarm_id,
        type_,
        rule_id="hot",
        rule_type="limit",
        identity="dev-a",
        signal="x",
        priority=2,
        message=f"{alarm_id} {type_.lower()}",
        ts_us=T0 + at,
        **more,
    )


def history_log() -> MemoryEventLog:
    log = MemoryEventLog(partitions=2)
    codec = default_codec()

    def put(topic: str, key: str, event: dict[str, Any], at_us: int) -> None:
        msg = Message(codec.encode(topic, event), key.encode(), at_us)
        asyncio.run(log.append(topic, [msg]))

    for i in range(10):
        for identity, base in (("dev-a", 0), ("dev-b", 5 * MINUTE)):
            at = T0 + base + i * 5 * MINUTE
            put(
                TELEMETRY,
                identity,
                {
                    "identity": identity,
                    "source": "test",
                    "received_us": at,
                    "samples": [{"ts_us": at, "values": {"x": float(i)}, "quality": 0}],
                    "batch_id": f"{identity}:{i}",
                },
                at,
            )
    newer = {
        "identity": "dev-a",
        "source": "test",
        "received_us": NEWER,
        "samples": [{"ts_us": NEWER, "values": {"x": 99.0}, "quality": 0}],
        "batch_id": "dev-a:newer",
    }
    put(TELEMETRY, "dev-a", newer, NEWER)
    steps = [
        ("a1", "RAISED", 10, {"trigger_value": 101.0}),
        ("a1", "ANNOTATED", 12, {"user": "op", "note": "looking"}),
        ("a1", "CLEARED", 20, {"trigger_value": 90.0}),
        ("a1", "ACKNOWLEDGED", 25, {"user": "op", "note": "done"}),
        ("a2", "RAISED", 30, {"trigger_value": 120.0}),
    ]
    for alarm_id, type_, minute, more in steps:
        put(ALARMS, alarm_id, alarm(alarm_id, type_, minute * MINUTE, **more), T0 + minute * MINUTE)
    for i in range(5):
        at = T0 + (40 + i) * MINUTE
        event = audit_event(
            actor=f"user-{i}",
            actor_role="operator",
            action="update",
            target_type="identity",
            target_id=f"dev-{i}",
            audit_id=f"audit-{i}",
            ts_us=at,
        )
        put(AUDIT, f"dev-{i}", event, at)
    return log


ALARM_SQL = (
    "SELECT alarm_id, state, raised_us, cleared_us, mgmt_status, ack_user, ack_note, "
    "annotation_count, version FROM millrace.alarms FINAL ORDER BY alarm_id"
)
NOTES_SQL = "SELECT alarm_id, user, text FROM millrace.alarm_annotations FINAL ORDER BY alarm_id"
AUDIT_SQL = (
    "SELECT audit_id, actor, target_id, toUnixTimestamp64Micro(ts) FROM millrace.audits FINAL "
    "ORDER BY audit_id"
)
LATEST_SQL = (
    "SELECT identity, toUnixTimestamp64Micro(ts), value FROM millrace.latest FINAL "
    "WHERE signal = 'x' ORDER BY identity"
)


def rows(store: ChdbStore, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.execute(sql).rows]


def test_restored_alarms_audits_and_latest_are_right(store: ChdbStore, tmp_path: Path) -> None:
    log = history_log()
    asyncio.run(live_fold(log, store))
    clean = {sql: rows(store, sql) for sql in (ALARM_SQL, NOTES_SQL, AUDIT_SQL, LATEST_SQL)}
    archive_store, manifests = archive(log, tmp_path / "archive", (TELEMETRY, ALARMS, AUDIT))
    assert {m.topic for m in manifests} == {TELEMETRY, ALARMS, AUDIT}

    drop_projections(store)
    migrate(store)

    def window(start: int, end: int) -> dict[str, Any]:
        return RestoreParams(start_us=start, end_us=end).to_json()

    async def restore(params: dict[str, Any]) -> dict[str, Any]:
        runner = Runner(store, archive_store)
        state = await runner.run(await runner.create(params))
        assert state["status"] == "completed", state
        return state

    later = asyncio.run(restore(window(T0 + 2 * HOUR_US, T0 + 3 * HOUR_US)))
    assert later["counts"]["readings"] == 1
    assert rows(store, LATEST_SQL) == [("dev-a", NEWER, 99.0)]
    first = asyncio.run(restore(window(T0, T0 + HOUR_US)))
    assert first["counts"]["readings"] == 20

    def check() -> None:
        # written here: a1 raised, annotated, cleared, acknowledged; a2 still active
        alarms = {r[0]: r[1:8] for r in rows(store, ALARM_SQL)}
        assert alarms == {
            "a1": ("cleared", T0 + 10 * MINUTE, T0 + 20 * MINUTE, "acknowledged", "op", "done", 1),
            "a2": ("active", T0 + 30 * MINUTE, 0, "pending", "", "", 0),
        }
        assert rows(store, NOTES_SQL) == [("a1", "op", "looking")]
        assert rows(store, AUDIT_SQL) == [
            (f"audit-{i}", f"user-{i}", f"dev-{i}", T0 + (40 + i) * MINUTE) for i in range(5)
        ]
        # latest only if newer: dev-a keeps 99 (restored later, older values after it);
        # dev-b takes its newest restored reading
        assert rows(store, LATEST_SQL) == [
            ("dev-a", NEWER, 99.0),
            ("dev-b", T0 + 5 * MINUTE + 9 * 5 * MINUTE, 9.0),
        ]
        # and all of it is what one clean live pass over the same log gave
        for sql, want in clean.items():
            assert rows(store, sql) == want, sql
        count = rows(store, "SELECT count() FROM millrace.readings")[0][0]
        assert int(count) == 21

    check()
    again = asyncio.run(restore(window(T0, T0 + 3 * HOUR_US)))
    assert again["counts"]["readings"] == 0
    check()
