"""The replay endpoints: a task created and shown, bad input naming the field, the
distributed deployment accepted, roles. (The replay itself: tests/projections/test_replay.py;
it is not run here, where the shared tables hold other tests' rows.)"""

from __future__ import annotations

import httpx

from tests.api.conftest import Api, MakeApi, assert_bad_field, error_of


async def post(api: Api, body: object, key: str = "admin") -> httpx.Response:
    return await api.client.post("/api/v1/replay", json=body, headers=api.auth(api._key(key)))


async def test_replay_task_is_created_and_shown(api: Api) -> None:
    r = await post(
        api, {"projections": ["readings", "latest"], "start_time": "2025-01-01T00:00:00Z"}
    )
    assert r.status_code == 202, r.text
    data = r.json()["data"]
    assert data["projections"] == ["readings", "latest"] and data["status"] == "pending"
    got = await api.get(f"/replay/{data['task_id']}")
    assert got.status_code == 200, got.text
    task = got.json()["data"]
    assert task["kind"] == "replay" and task["status"] == "pending"
    assert task["params"] == {
        "projections": ["readings", "latest"],
        "start_time_us": 1_735_689_600_000_000,
    }
    listed = await api.get("/replay")
    assert data["task_id"] in [t["task_id"] for t in listed.json()["data"]]


async def test_bad_input_names_the_field(api: Api) -> None:
    r = await post(api, {"projections": ["readings", "no_such_table"]})
    assert_bad_field(r, "projections")
    assert "no_such_table" in error_of(r)["message"]
    assert_bad_field(await post(api, {"start_time": "yesterday"}), "start_time")
    r = await api.get("/replay/nope")
    assert r.status_code == 404 and "nope" in error_of(r)["message"]


async def test_only_admins_start_a_replay(api: Api) -> None:
    r = await post(api, {}, key="operator")
    assert r.status_code == 403, r.text


async def test_distributed_deployment_takes_the_task(make_api: MakeApi) -> None:
    """The task runner of millrace process runs it (tests/test_distributed_replay.py)."""
    api = await make_api()
    api.ctx.status = lambda: {"mode": "distributed"}
    r = await post(api, {})
    assert r.status_code == 202, r.text
    assert r.json()["data"]["status"] == "pending"
