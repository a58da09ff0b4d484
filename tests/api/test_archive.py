"""The archive endpoints: windows listed from the manifests, a flush that reaches the
archiver through a task and answers once it is done, bad input naming the field."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from millrace.pipeline.archive.archiver import Archiver
from millrace.pipeline.archive.config import ArchiveConfig
from millrace.pipeline.archive.store import ArchiveStore
from tests.api.conftest import Api, MakeApi, assert_bad_field, error_of
from tests.pipeline.archive.helpers import batch

T0 = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z
HOUR = 3_600_000_000


@pytest.fixture
async def archived_api(make_api: MakeApi, tmp_path: Path) -> AsyncIterator[Api]:
    api = await make_api()
    api.ctx.archive = ArchiveStore(str(tmp_path))
    cfg = ArchiveConfig(url=str(tmp_path), idle_close_s=10**9, poll_ms=10)
    archiver = Archiver(api.log, api.ctx.archive, cfg, publisher=api.ctx.publisher)
    stop = asyncio.Event()
    task = asyncio.create_task(archiver.run(stop))
    yield api
    stop.set()
    await task


async def publish(api: Api, identity: str, times: list[int]) -> None:
    await api.ctx.publisher.publish("telemetry", [(identity, batch(identity, t)) for t in times])


async def test_flush_then_list(archived_api: Api) -> None:
    api = archived_api
    await publish(api, "dev-1", [T0, T0 + 60_000_000, T0 + HOUR + 5])
    await publish(api, "dev-2", [T0 + 2 * HOUR])
    r = await api.client.post("/api/v1/archive/flush", headers=api.auth(api.admin))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["status"] == "completed"
    r = await api.get("/archive", key="operator", topic="telemetry", limit=100)
    assert r.status_code == 200, r.text
    body = r.json()
    rows = body["data"]
    # every telemetry record is in exactly one window; 3 readings per batch
    assert sum(w["records"] for w in rows) == 4 and sum(w["readings"] for w in rows) == 12
    assert body["total"] == len(rows) and body["meta"]["pagination"]["total_rows"] == len(rows)
    assert all(w["path"].startswith("telemetry/") for w in rows)
    # windows by log time (the append's clock): a range after the last record is empty
    us = (await api.get("/archive", key="operator", topic="telemetry", epoch="us")).json()
    last = max(w["last_timestamp"] for w in us["data"])
    first = min(w["first_timestamp"] for w in us["data"])
    after = await api.get(
        "/archive", key="operator", topic="telemetry", start_time=str(last + 1), epoch="us"
    )
    assert after.json()["data"] == []
    span = await api.get(
        "/archive", key="operator", topic="telemetry", epoch="us",
        start_time=str(first), end_time=str(last + 1),
    )  # fmt: skip
    assert span.json()["data"] == us["data"]
    paged = await api.get("/archive", key="operator", limit=1, page=2)
    assert len(paged.json()["data"]) == 1 and paged.json()["total"] >= 2


async def test_bad_input_names_the_field(archived_api: Api) -> None:
    api = archived_api
    r = await api.get("/archive", key="operator", start_time="100", end_time="100")
    assert_bad_field(r, "end_time")
    r = await api.get("/archive", key="operator", topic="nope")
    assert_bad_field(r, "topic")
    r = await api.get("/archive", key="operator", start_time="yesterday-ish")
    assert_bad_field(r, "start_time")


async def test_roles_and_no_archive(make_api: MakeApi) -> None:
    api = await make_api()
    r = await api.get("/archive", key="viewer")
    assert r.status_code == 403, r.text
    r = await api.client.post("/api/v1/archive/flush", headers=api.auth(api.operator))
    assert r.status_code == 403, r.text
    r = await api.get("/archive", key="operator")
    assert r.status_code == 409 and "archive.url" in error_of(r)["message"]
    r = await api.client.post("/api/v1/archive/flush", headers=api.auth(api.admin))
    assert r.status_code == 409
