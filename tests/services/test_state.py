"""The service fold (pipeline.services.state) against a model written here, and the
services projection in chDB filled by the real runtime (with crashes and a replay)
compared with the fold of the events this test appended."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.pipeline.errors import StoreError
from millrace.pipeline.events import service_event
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.services import ServiceProcessor
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.services.state import ServiceRejectedError, apply
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.projection_reset import empty_projections
from tests.projections.test_exactly_once import CrashingStore

_op = st.tuples(
    st.sampled_from(["svc-a", "svc-b"]),
    st.sampled_from(["installed", "updated", "enabled", "disabled", "removed", "renamed"]),
    st.sampled_from(["text-1", "text-2"]),
)


def _event(sid: str, kind: str, text: str, n: int) -> dict[str, Any]:
    body = text if kind in ("installed", "updated") else None
    return service_event(sid, kind, ts_us=1000 + n, text=body, parameters={"p": n}, actor="t")


def model(ops: list[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    """What each service is after ``ops``, said differently: a status, the text, the
    count of installs/updates, or absent when nothing valid happened to it."""
    out: dict[str, dict[str, Any]] = {}
    for n, (sid, kind, text) in enumerate(ops):
        s = out.get(sid)
        alive = s is not None and s["status"] != "removed"
        if kind == "installed":
            fresh = not alive
            s = out[sid] = dict(s or {"revision": 0})
            if fresh:
                s.update(status="enabled", installed_us=1000 + n)
            s.update(text=text, revision=s["revision"] + 1, updated_us=1000 + n)
        elif kind == "updated" and alive:
            assert s is not None
            s.update(text=text, revision=s["revision"] + 1, updated_us=1000 + n)
        elif kind in ("enabled", "disabled") and alive:
            assert s is not None
            s.update(status=kind, updated_us=1000 + n)
        elif kind == "removed":
            s = out[sid] = dict(s or {"revision": 0, "text": "", "installed_us": 0})
            s.update(status="removed", updated_us=1000 + n)
    return out


def fold(ops: list[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    for n, (sid, kind, text) in enumerate(ops):
        try:
            states[sid] = apply(states.get(sid), _event(sid, kind, text, n), n + 1)
        except ServiceRejectedError:
            pass
    return states


def _view(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "text", "revision", "installed_us", "updated_us")
    return {k: s[k] for k in keys}


@given(st.lists(_op, max_size=12))
def test_fold_matches_model(ops: list[tuple[str, str, str]]) -> None:
    got = fold(ops)
    want = model(ops)
    assert {k: _view(v) for k, v in got.items() if k in want} == {
        k: {f: v.get(f, 0) for f in ("status", "text", "revision", "installed_us", "updated_us")}
        for k, v in want.items()
    }
    for k in set(got) - set(want):  # only unknown types happened to it: nothing
        assert (got[k]["status"], got[k]["revision"], got[k]["updated_us"]) == ("removed", 0, 0)
    for s in got.values():
        assert s["enabled"] == (s["status"] == "enabled")


def test_rejections_name_the_service() -> None:
    with pytest.raises(ServiceRejectedError, match="svc-x"):
        apply(None, service_event("svc-x", "enabled"), 1)
    with pytest.raises(ServiceRejectedError, match="text"):
        apply(None, service_event("svc-x", "installed"), 1)
    s = apply(None, service_event("svc-x", "installed", text="t"), 1)
    assert apply(s, service_event("svc-x", "whatever"), 2)["status"] == "enabled"


def _rows(store: ChdbStore) -> dict[str, dict[str, Any]]:
    rows = store.execute(
        "SELECT service_id, status, text, revision, installed_us, updated_us, enabled,"
        " parameters FROM millrace.services FINAL ORDER BY service_id"
    )
    return {
        r[0]: {
            "status": r[1],
            "text": r[2],
            "revision": r[3],
            "installed_us": r[4],
            "updated_us": r[5],
            "enabled": r[6],
            "parameters": dict(r[7]),
        }
        for r in rows.rows
    }


async def _scenario(store: ChdbStore, ops: list[tuple[str, str, str]], crash_at: int) -> None:
    log = MemoryEventLog()
    publisher = LogPublisher(log)
    events = [(sid, _event(sid, kind, text, n)) for n, (sid, kind, text) in enumerate(ops)]
    await publisher.publish("services", events)

    def runtime(max_records: int, crash: int | None = None) -> EmbeddedRuntime:
        sink = ProjectionWriter(CrashingStore(store, crash))
        return EmbeddedRuntime(log, sink, [ServiceProcessor()], max_records=max_records)

    try:
        await runtime(2, crash_at).run_until_idle()
    except StoreError as exc:
        assert "injected" in str(exc)
    await runtime(3).run_until_idle()
    expected = {
        k: {**_view(v), "enabled": v["enabled"], "parameters": v["parameters"]}
        for k, v in fold(ops).items()
    }
    assert _rows(store) == expected
    drop_projections(store)
    migrate(store)
    await runtime(1).run_until_idle()  # a replay from the start: the same rows
    assert _rows(store) == expected


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(_op, min_size=1, max_size=10), crash_at=st.integers(1, 4))
def test_projection_is_the_fold(
    store: ChdbStore, ops: list[tuple[str, str, str]], crash_at: int
) -> None:
    empty_projections(store)  # each example starts empty
    asyncio.run(_scenario(store, ops, crash_at))
