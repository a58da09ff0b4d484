"""The restore endpoints: tasks created, listed and shown; bad input named (400), URLs
outside the allow-list refused (403), unknown tasks 404, retry only of a failed task;
and a restore run end to end whose data answers through the signal endpoints, twice
without doubling; URL credentials only as ${ENV} references: a literal password
refused, no secret in the answers, the tasks topic or the logs. (The fold itself:
tests/pipeline/restore.)"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import httpx

from millrace.api.context import ApiSettings
from millrace.pipeline.archive.format import HOUR_US, window_start
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.restore import KIND, RestoreTask
from millrace.pipeline.tasks import TaskKinds, TaskRunner
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.api.conftest import NOW_US, Api, MakeApi, assert_bad_field, error_of, uid
from tests.pipeline.restore.test_url_auth import BasicAuthServer, tasks_bytes

T0 = window_start(NOW_US - 2 * HOUR_US, HOUR_US)


async def post(api: Api, path: str, body: object, key: str = "operator") -> httpx.Response:
    return await api.client.post(
        f"/api/v1/restore{path}", json=body, headers=api.auth(api._key(key))
    )


async def with_archive(make_api: MakeApi, root: Path, **settings: Any) -> Api:
    api = await make_api(settings=ApiSettings(**settings))
    api.ctx.archive = ArchiveStore(str(root))
    return api


async def run_task(api: Api, runner: TaskRunner, task_id: str) -> dict[str, Any]:
    """Run the task runner until the task ends; the task as the API shows it."""
    stop = asyncio.Event()
    job = asyncio.create_task(runner.run(stop))
    try:
        for _ in range(3000):
            await asyncio.sleep(0.01)
            await api.sync()
            task = (await api.get(f"/restore/{task_id}", key="operator")).json()["data"]
            if task["status"] in ("completed", "failed"):
                return dict(task)
    finally:
        stop.set()
        await job
    raise AssertionError("the restore did not finish")


def telemetry(identity: str, n: int) -> list[Message]:
    """``n`` batches of ``identity``, one a minute from T0, signal ``v`` = i."""
    codec = default_codec()
    return [
        Message(
            codec.encode(
                "telemetry",
                {
                    "identity": identity,
                    "source": "test",
                    "received_us": T0 + i * 60_000_000,
                    "samples": [{"ts_us": T0 + i * 60_000_000, "values": {"v": float(i)}}],
                    "batch_id": f"{identity}:{i}",
                },
            ),
            identity.encode(),
            T0 + i * 60_000_000,
        )
        for i in range(n)
    ]


async def test_task_created_listed_and_shown(make_api: MakeApi, tmp_path: Path) -> None:
    api = await with_archive(make_api, tmp_path)
    r = await post(
        api,
        "/time",
        {
            "start_time": T0 // 1_000_000,
            "end_time": "2025-06-01T11:00:00Z",
            "topics": ["telemetry"],
        },
    )
    assert r.status_code == 202, r.text
    task_id = r.json()["data"]["task_id"]
    got = await api.get(f"/restore/{task_id}", key="operator")
    assert got.status_code == 200, got.text
    task = got.json()["data"]
    assert (task["kind"], task["status"]) == ("restore", "pending")
    assert task["params"] == {
        "start_us": T0,
        "end_us": 1_748_775_600_000_000,
        "topics": ["telemetry"],
    }
    pending = await api.get("/restore", key="operator", status="pending")
    assert task_id in [t["task_id"] for t in pending.json()["data"]]
    assert pending.json()["meta"]["pagination"]["total_rows"] >= 1
    done = await api.get("/restore", key="operator", status="completed")
    assert task_id not in [t["task_id"] for t in done.json()["data"]]


async def test_bad_input(make_api: MakeApi, tmp_path: Path) -> None:
    api = await with_archive(make_api, tmp_path, restore_url_prefixes=("s3://ok/exports/",))
    same = {"start_time": "2025-06-01T10:00:00Z", "end_time": "2025-06-01T10:00:00Z"}
    assert_bad_field(await post(api, "/time", same), "start_time")
    assert_bad_field(
        await post(api, "/time", {**same, "end_time": "2025-06-01T11:00:00Z", "topics": ["x"]}),
        "topics",
    )
    assert_bad_field(await post(api, "/time", {**same, "end_time": "soon"}), "end_time")
    for url in ("s3://other/x.avro", "file:///etc/passwd", "s3://ok/exports/../x.avro"):
        r = await post(api, "/url", {"urls": ["telemetry/a.avro", url]})
        assert r.status_code == 403, r.text
        assert error_of(r)["details"][0]["field"] == "urls[1]"
    assert (await post(api, "/url", {"urls": ["s3://ok/exports/x.avro"]})).status_code == 202
    r = await api.get("/restore/no-such-task", key="operator")
    assert r.status_code == 404 and "no-such-task" in error_of(r)["message"]
    assert (await post(api, "/no-such-task/retry", {})).status_code == 404
    created = await post(api, "/url", {"urls": ["telemetry/a.avro"]})
    r = await post(api, f"/{created.json()['data']['task_id']}/retry", {})
    assert r.status_code == 409 and "pending" in error_of(r)["message"]
    assert (await post(api, "/url", {"urls": ["x"]}, key="viewer")).status_code == 403
    assert (await api.get("/restore", key=None)).status_code == 401


async def test_no_archive_configured_answers_409(api: Api) -> None:
    body = {"start_time": 1, "end_time": 2}
    assert (await post(api, "/time", body)).status_code == 409


async def test_restore_answers_through_the_signal_endpoints(
    make_api: MakeApi, tmp_path: Path, writer_store: ChdbStore
) -> None:
    identity = uid("restore-")
    source = MemoryEventLog(partitions=1)
    await source.append("telemetry", telemetry(identity, 30))
    store = ArchiveStore(str(tmp_path))
    records = await source.read("telemetry", 0, 0, 100)
    store.write_window(records, T0, T0 + HOUR_US)
    api = await with_archive(make_api, tmp_path)
    kinds = TaskKinds()
    kinds.register(KIND, RestoreTask(ProjectionWriter(writer_store), store, api.ctx.publisher))
    runner = TaskRunner(api.log, api.ctx.publisher, kinds, poll_s=0.01)
    body = {"start_time": T0 // 1_000_000, "end_time": (T0 + HOUR_US) // 1_000_000}

    async def restore() -> dict[str, Any]:
        task_id = (await post(api, "/time", body)).json()["data"]["task_id"]
        return await run_task(api, runner, task_id)

    for _ in range(2):  # the second restore doubles nothing
        task = await restore()
        assert task["status"] == "completed", task
        assert task["files"][0]["file"].startswith("telemetry/")
        r = await api.get(
            f"/identities/{identity}/signals/v",
            start_time=T0 // 1_000_000,
            end_time=(T0 + HOUR_US) // 1_000_000,
            limit=1000,
        )
        assert r.status_code == 200, r.text
        values = sorted(
            p[1] if isinstance(p, list) else p["value"] for p in r.json()["data"]["points"]
        )
        assert values == [float(i) for i in range(30)]


async def test_url_credentials_never_reach_the_log_nor_the_answers(
    make_api: MakeApi, tmp_path: Path, writer_store: ChdbStore, caplog: Any
) -> None:
    """A literal password is refused (400 naming ``urls[i]``, the password not echoed);
    a variable the prefix does not declare 403; a restore through HTTP Basic auth
    whose credentials the runner resolves from its environment completes, and no
    answer, no record of the ``tasks`` topic and no log line holds the secret."""
    password = "pw-" + secrets.token_hex(8)
    source = MemoryEventLog(partitions=1)
    await source.append("telemetry", telemetry(uid("auth-"), 40))
    served = ArchiveStore(str(tmp_path / "served"))
    records = await source.read("telemetry", 0, 0, 100)
    manifests = [
        served.write_window(records[:20], T0, T0 + HOUR_US),
        served.write_window(records[20:], T0 + HOUR_US, T0 + 2 * HOUR_US),
    ]
    with BasicAuthServer(tmp_path / "served", "reader", password) as server:
        prefix = server.prefix()  # http://${ARCHIVE_USER}:${ARCHIVE_PASSWORD}@host/exports/
        api = await with_archive(make_api, tmp_path / "store", restore_url_prefixes=(prefix,))
        literal = server.prefix(f"reader:{password}") + manifests[0].path
        r = await post(api, "/url", {"urls": [prefix + manifests[0].path, literal]})
        assert_bad_field(r, "urls[1]")
        assert password not in r.text and "${ENV}" in r.text and "reader:***@" in r.text
        other = server.prefix("${ARCHIVE_USER}:${MILLRACE_JWT_SECRET}") + manifests[0].path
        r = await post(api, "/url", {"urls": [other]})
        assert r.status_code == 403 and error_of(r)["details"][0]["field"] == "urls[0]"

        env = {"ARCHIVE_USER": "reader", "ARCHIVE_PASSWORD": password}
        kinds = TaskKinds()
        handler = RestoreTask(
            ProjectionWriter(writer_store),
            api.ctx.archive,
            api.ctx.publisher,
            allowed_prefixes=(prefix,),
            env=env,
        )
        kinds.register(KIND, handler)
        runner = TaskRunner(api.log, api.ctx.publisher, kinds, poll_s=0.01)
        urls = [prefix + manifests[0].path] + [server.prefix("") + m.path for m in manifests[1:]]
        r = await post(api, "/url", {"urls": urls})
        assert r.status_code == 202, r.text
        got = await run_task(api, runner, r.json()["data"]["task_id"])
    assert got["status"] == "completed", got
    assert got["params"]["urls"] == urls  # the references, shown as they are
    assert {f["file"] for f in got["files"]} == set(urls)
    assert set(server.seen) == {server.expected}
    listed = (await api.get("/restore", key="operator")).text
    token = server.expected.removeprefix("Basic ")
    for text in (listed, str(got), caplog.text, (await tasks_bytes(api.log)).decode("latin-1")):
        assert password not in text and token not in text
