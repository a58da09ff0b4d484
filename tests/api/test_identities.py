"""The device registry through the API: CRUD, filters, bulk, tags, lock, resource
definitions, state with Commands, provisioning and device authentication, metrics.

Every write is an event on the log; the test app's ``wait_applied`` runs the
projections, so a write is readable when it answers (as in ``millrace run``)."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from millrace.pipeline.codec import default_codec
from millrace.pipeline.identities.config import ProvisioningConfig, RegistryConfig
from millrace.pipeline.identities.formats import IdentityFormat
from millrace.pipeline.topics import COMMANDS, IDENTITY, TELEMETRY
from tests.api.conftest import NOW_US, V1, Api, MakeApi, assert_bad_field, error_of, uid


async def post(api: Api, path: str, body: Any, key: str | None = "operator") -> httpx.Response:
    return await api.client.post(f"{V1}{path}", json=body, headers=api.auth(api._key(key)))


async def patch(api: Api, path: str, body: Any, key: str = "operator") -> httpx.Response:
    return await api.client.patch(f"{V1}{path}", json=body, headers=api.auth(api._key(key)))


async def put(api: Api, path: str, body: Any, key: str = "admin") -> httpx.Response:
    return await api.client.put(f"{V1}{path}", json=body, headers=api.auth(api._key(key)))


async def delete(api: Api, path: str, key: str = "operator", **params: Any) -> httpx.Response:
    return await api.client.delete(f"{V1}{path}", params=params, headers=api.auth(api._key(key)))


async def create(api: Api, identity: str, **body: Any) -> dict[str, Any]:
    r = await post(api, "/identities", {"identity": identity, **body})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def records(api: Api, topic: str) -> list[dict[str, Any]]:
    codec = default_codec()
    out = []
    for p, recs in enumerate(api.log._topics.get(topic, [])):
        del p
        for rec in recs:
            out.append(codec.decode(topic, rec.value))
    return out


async def topic_size(api: Api, topic: str) -> int:
    total = 0
    for p in range(api.log.partitions(topic)):
        total += (await api.log.offsets(topic, p))[1]
    return total


# -- registry -----------------------------------------------------------------------------


async def test_create_get_update_delete(api: Api) -> None:
    name = uid("dev")
    created = await create(api, name, attributes={"model": "P4"}, tags={"line": ["1"]})
    assert created["identity"] == name
    assert created["status"] == "whitelisted"
    assert created["attributes"] == {"model": "P4"}
    assert created["tags"] == {"line": ["1"]}
    assert "credential_hash" not in created and "token" not in created

    r = await post(api, "/identities", {"identity": name})
    assert r.status_code == 409, r.text

    r = await patch(api, f"/identities/{name}", {"attributes": {"fw": "2.1"}, "unset": ["model"]})
    assert r.status_code == 200, r.text
    assert r.json()["attributes"] == {"fw": "2.1"}

    r = await delete(api, f"/identities/{name}")
    assert r.status_code == 204, r.text
    r = await api.get(f"/identities/{name}")
    assert r.status_code == 404
    assert error_of(r)["code"] == "not_found"
    r = await patch(api, f"/identities/{name}", {"attributes": {"a": "b"}})
    assert r.status_code == 404
    # created again: a fresh identity, nothing of the old one
    again = await create(api, name)
    assert again["attributes"] == {} and again["tags"] == {}


async def test_identity_format_is_enforced_and_generated(make_api: MakeApi) -> None:
    fmt = IdentityFormat(type="mac:48", prefix="gw-", casing="lower")
    api = await make_api(registry=RegistryConfig(format=fmt))
    r = await post(api, "/identities", {"identity": "gw-AA:BB:CC:DD:EE:FF"})
    assert_bad_field(r, "identity")
    r = await post(api, "/identities", {"identity": "aa:bb:cc:dd:ee:ff"})
    assert_bad_field(r, "identity")
    r = await post(api, "/identities", {})
    assert r.status_code == 201, r.text
    name = r.json()["identity"]
    assert name.startswith("gw-") and len(name) == 3 + 17 and name == name.lower()
    assert int(name[3:5], 16) & 0b11 == 0b10  # locally administered, unicast


async def test_bad_input_names_the_field(api: Api) -> None:
    name = uid("dev")
    r = await post(api, "/identities", {"identity": name, "tags": {"t" * 129: ["x"]}})
    assert_bad_field(r, "tags." + "t" * 40)
    r = await post(api, "/identities", {"identity": name, "tags": {"t": ["v" * 4097]}})
    assert_bad_field(r, "tags.t[0]")
    r = await post(api, "/identities", {"identity": name, "attributes": {"status": "locked"}})
    assert_bad_field(r, "attributes.status")
    r = await post(api, "/identities", {"identity": name, "bogus": 1})
    assert_bad_field(r, "body.bogus")
    await create(api, name)
    r = await post(api, f"/identities/{name}/tags", {"tags": {"x" * 200: []}})
    assert r.status_code == 400
    r = await api.get("/identities", status="sleeping")
    assert_bad_field(r, "status[0]")
    r = await api.get("/identities", order="colour.asc")
    assert_bad_field(r, "order")
    r = await api.get("/identities", tags="floor~2")
    assert_bad_field(r, "tags[0]")


async def test_list_filters_order_paging_and_count(api: Api) -> None:
    p = uid("f")
    names = [f"{p}-{i}" for i in range(5)]
    for i, n in enumerate(names):
        await create(api, n, tags={"floor": [str(i * 5)], "zone": ["a" if i % 2 else "b"]})
    only = f"^{p}-"
    r = await api.get("/identities", identity=only)
    assert [x["identity"] for x in r.json()["items"]] == names
    r = await api.get("/identities", identity=only, order="identity.desc", limit=2, offset=1)
    body = r.json()
    assert [x["identity"] for x in body["items"]] == [names[3], names[2]]
    assert body["meta"] == {"limit": 2, "offset": 1, "may_load_more": True}
    r = await api.get("/identities", identity=only, limit=2, offset=3)
    assert r.json()["meta"]["may_load_more"] is False
    r = await api.get("/identities", identity=only, tags="floor:gte:10")
    assert [x["identity"] for x in r.json()["items"]] == names[2:]
    r = await api.get("/identities", identity=only, tags=["floor:lt:15", "zone:eq:a"])
    assert [x["identity"] for x in r.json()["items"]] == [names[1]]
    r = await api.get("/identities", identity=only, tag="zone", tag_value="b")
    assert [x["identity"] for x in r.json()["items"]] == [names[0], names[2], names[4]]
    r = await api.get("/identities/count", identity=only, tag="zone", tag_value="b")
    assert r.json() == {"count": 3}
    r = await api.get("/identities/count", identity=only, status="whitelisted,offline")
    assert r.json() == {"count": 5}
    r = await api.get("/identities/count", identity=only, status="online")
    assert r.json() == {"count": 0}


async def test_bulk_update_and_delete_by_query(api: Api) -> None:
    p = uid("b")
    for i in range(4):
        await create(api, f"{p}-{i}", tags={"batch": ["old" if i < 3 else "new"]})
    r = await post(api, "/identities/bulk/delete", {"query": {}})
    assert_bad_field(r, "query")
    r = await post(
        api,
        "/identities/bulk/update",
        {
            "query": {"identity": f"^{p}-", "tag": "batch", "tag_value": "old"},
            "update": {"attributes": {"site": "north"}},
        },
    )
    assert r.json() == {"matched": 3, "updated": 3}
    r = await api.get("/identities", identity=f"^{p}-")
    assert [x["attributes"] for x in r.json()["items"]] == [{"site": "north"}] * 3 + [{}]
    r = await post(
        api, "/identities/bulk/delete", {"query": {"identity": f"^{p}-", "tags": ["batch:eq:old"]}}
    )
    assert r.json() == {"deleted": 3}
    r = await api.get("/identities", identity=f"^{p}-")
    assert [x["identity"] for x in r.json()["items"]] == [f"{p}-3"]


async def test_tags(api: Api) -> None:
    name, tag = uid("tg"), uid("tag")
    await create(api, name)
    r = await post(api, f"/identities/{name}/tags", {"tags": {tag: ["a", "b"]}})
    assert r.json()["tags"] == {tag: ["a", "b"]}
    r = await post(api, f"/identities/{name}/tags", {"tags": {tag: ["b", "c"]}})
    assert r.json()["tags"] == {tag: ["a", "b", "c"]}
    r = await post(api, f"/identities/{name}/tags", {"tags": {tag: ["z"]}, "replace": True})
    assert r.json()["tags"] == {tag: ["z"]}
    await post(api, f"/identities/{name}/tags", {"tags": {tag: ["y"], "other": ["1"]}})
    r = await api.get(f"/identities/{name}/tags/{tag}")
    assert r.json() == {"tag": tag, "values": ["z", "y"]}
    assert tag in (await api.get("/tags")).json()["tags"]
    assert (await api.get(f"/tags/{tag}")).json()["values"] == ["y", "z"]
    r = await delete(api, f"/identities/{name}/tags/{tag}", values=["z"])
    assert r.json()["tags"] == {tag: ["y"], "other": ["1"]}
    r = await delete(api, f"/identities/{name}/tags/{tag}")
    assert r.json()["tags"] == {"other": ["1"]}
    r = await api.get(f"/identities/{name}/tags/{tag}")
    assert r.status_code == 404


async def test_lock_refuses_ingest_and_unlock_restores(api: Api) -> None:
    name = uid("lk")
    await create(api, name)
    r = await post(api, f"/identities/{name}/lock", {})
    assert r.json()["status"] == "locked"
    before = await topic_size(api, TELEMETRY)
    r = await api.ingest(name, [{"timestamp": NOW_US, "values": {"t": 1.0}}])
    assert r.status_code == 403 and error_of(r)["code"] == "identity_locked"
    assert await topic_size(api, TELEMETRY) == before
    r = await post(api, f"/identities/{name}/unlock", {})
    assert r.json()["status"] == "whitelisted"
    r = await api.ingest(name, [{"timestamp": NOW_US, "values": {"t": 1.0}}])
    assert r.status_code == 202, r.text


async def test_viewer_cannot_write(api: Api) -> None:
    r = await post(api, "/identities", {"identity": uid()}, key="viewer")
    assert r.status_code == 403
    r = await put(api, f"/resources/{uid('r')}", {"format": "number"}, key="operator")
    assert r.status_code == 403


# -- resources and state ------------------------------------------------------------------


async def test_resource_definitions_crud_and_ingest_checks(api: Api) -> None:
    res = uid("mode")
    r = await post(
        api, f"/resources/{res}", {"format": "string", "allowed": ["auto", "manual"]}, key="admin"
    )
    assert r.status_code == 201, r.text
    assert r.json()["allowed"] == ["auto", "manual"]
    r = await post(api, f"/resources/{res}", {"format": "string"}, key="admin")
    assert r.status_code == 409
    r = await api.get(f"/resources/{res}")
    assert r.json()["format"] == "string"
    assert res in [x["name"] for x in (await api.get("/resources")).json()["items"]]
    r = await put(api, f"/resources/{uid('x')}", {"format": "number", "timeout_s": 5})
    assert_bad_field(r, "body.timeout_s")
    r = await put(api, f"/resources/{uid('x')}", {"allowed": [{"min": 5, "max": 1}]})
    assert r.status_code == 400

    dev = uid("dev")
    before = await topic_size(api, TELEMETRY)
    r = await api.ingest(dev, [{"timestamp": NOW_US, "values": {res: "turbo", "t": 1}}])
    assert_bad_field(r, f"body[0].values.{res}")
    assert await topic_size(api, TELEMETRY) == before
    r = await api.ingest(dev, [{"timestamp": NOW_US, "values": {res: "auto"}}])
    assert r.status_code == 202, r.text

    r = await delete(api, f"/resources/{res}", key="admin")
    assert r.status_code == 204
    assert (await api.get(f"/resources/{res}")).status_code == 404
    r = await api.ingest(dev, [{"timestamp": NOW_US, "values": {res: "turbo"}}])
    assert r.status_code == 202, r.text


async def test_state_set_with_sync_issues_a_command(api: Api) -> None:
    sp, fixed = uid("sp"), uid("serial")
    await put(api, f"/resources/{sp}", {"settable": True, "allowed": [{"min": 0, "max": 100}]})
    await put(api, f"/resources/{fixed}", {"format": "string"})
    name = uid("dev")
    await create(api, name)
    r = await post(api, f"/identities/{name}/state", {uid("nope"): 1})
    assert r.status_code == 400 and "unknown resource" in error_of(r)["message"]
    r = await post(api, f"/identities/{name}/state", {fixed: "x"})
    assert_bad_field(r, fixed)
    r = await post(api, f"/identities/{name}/state", {sp: 150})
    assert_bad_field(r, sp)
    r = await post(api, f"/identities/{uid('ghost')}/state", {sp: 5})
    assert r.status_code == 404

    r = await post(api, f"/identities/{name}/state", {sp: 42.5})
    assert r.status_code == 202, r.text
    [command_id] = r.json()["commands"]
    state = r.json()["state"][sp]
    assert state["set"] == 42.5 and state["pending"] is True and state["reported"] is None
    [command] = [c for c in records(api, COMMANDS) if c["command_id"] == command_id]
    assert command["identity"] == name and command["resource"] == sp
    assert command["value"] == 42.5 and command["issued_by"].startswith("key:")
    sets = [e for e in records(api, IDENTITY) if e["identity"] == name and e["type"] == "STATE_SET"]
    assert command["correlation_id"] == sets[-1]["event_id"]


async def test_state_set_without_sync_changes_reported_too(api: Api) -> None:
    res = uid("label")
    await put(api, f"/resources/{res}", {"format": "string", "settable": True, "sync": False})
    name = uid("dev")
    await create(api, name)
    r = await post(api, f"/identities/{name}/state", {res: "Line 4"})
    assert r.status_code == 202, r.text
    assert r.json()["commands"] == []
    state = (await api.get(f"/identities/{name}/state")).json()[res]
    assert state["set"] == "Line 4" and state["reported"] == "Line 4"
    assert state["pending"] is False


# -- provisioning and device authentication -----------------------------------------------


def _registry(**prov: Any) -> RegistryConfig:
    return RegistryConfig(provisioning=ProvisioningConfig(**prov))


async def test_provision_with_token_then_ingest_as_the_device(make_api: MakeApi) -> None:
    api = await make_api(registry=_registry())
    name = uid("dev")
    await create(api, name)
    r = await post(api, "/provision", {"identity": name}, key=None)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert token.startswith("dt_")
    row = (await api.get(f"/identities/{name}")).json()
    assert row["status"] == "provisioned" and row["auth_type"] == "token"
    assert token not in json.dumps(row) and "argon2" not in json.dumps(row)

    sample = [{"timestamp": NOW_US, "values": {"t": 3.5}}]
    r = await api.client.post(
        f"{V1}/identities/{name}/data", json=sample, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 202, r.text
    [batch] = [b for b in await api.telemetry_records() if b["identity"] == name]
    assert batch["source"] == f"device:{name}"

    # a second provisioning of a provisioned identity is refused
    r = await post(api, "/provision", {"identity": name}, key=None)
    assert r.status_code == 409


async def test_device_auth_failures_leave_nothing_in_the_log(make_api: MakeApi) -> None:
    api = await make_api(registry=_registry(credential_ttl_s=3600))
    name, other = uid("dev"), uid("dev")
    password = "correct-horse-battery-staple"
    await create(api, name)
    await create(api, other)
    r = await post(
        api, "/provision", {"identity": name, "auth_type": "password", "password": password}, None
    )
    assert r.status_code == 201, r.text
    assert r.json()["credential_expires_us"] == NOW_US + 3600 * 1_000_000
    sample = [{"timestamp": NOW_US, "values": {"t": 1.0}}]

    async def send(headers: dict[str, str], identity: str = name) -> httpx.Response:
        return await api.client.post(
            f"{V1}/identities/{identity}/data", json=sample, headers=headers
        )

    before = await topic_size(api, TELEMETRY)
    basic = base64.b64encode(f"{name}:{password}".encode()).decode()
    wrong = base64.b64encode(f"{name}:not the password at all".encode()).decode()
    assert (await send({"Authorization": f"Basic {wrong}"})).status_code == 401
    assert (await send({"Authorization": "Bearer dt_forged"})).status_code == 401
    assert (await send({})).status_code == 401
    # the right password for another identity
    assert (await send({"Authorization": f"Bearer {password}"}, other)).status_code == 401
    await post(api, f"/identities/{name}/lock", {})
    r = await send({"Authorization": f"Basic {basic}"})
    assert r.status_code == 403 and error_of(r)["code"] == "identity_locked"
    await post(api, f"/identities/{name}/unlock", {})
    assert await topic_size(api, TELEMETRY) == before
    assert (await send({"Authorization": f"Basic {basic}"})).status_code == 202
    assert (await send({"Authorization": f"Bearer {password}"})).status_code == 202
    # credentials past their time: refused until the device reprovisions
    later = await make_api(registry=_registry(), clock=lambda: NOW_US + 3601 * 1_000_000)
    later.runtime = api.runtime
    r = await later.client.post(
        f"{V1}/identities/{name}/data", json=sample, headers={"Authorization": f"Basic {basic}"}
    )
    assert r.status_code == 403 and error_of(r)["code"] == "credential_expired"
    assert await topic_size(api, TELEMETRY) == before + 2


async def test_provisioning_policy(make_api: MakeApi) -> None:
    off = await make_api(registry=_registry(enabled=False))
    r = await post(off, "/provision", {"identity": uid()}, key=None)
    assert r.status_code == 403 and error_of(r)["code"] == "provisioning_disabled"
    fenced = await make_api(registry=_registry(ip_allowlist=["10.1.0.0/16"]))
    r = await post(fenced, "/provision", {"identity": uid()}, key=None)
    assert r.status_code == 403 and error_of(r)["code"] == "address_not_allowed"

    api = await make_api(registry=_registry(window_s=60))
    r = await post(api, "/provision", {"identity": uid("unknown")}, key=None)
    assert r.status_code == 403 and error_of(r)["code"] == "not_whitelisted"
    r = await post(api, "/provision", {}, key=None)
    assert_bad_field(r, "identity")
    name = uid("dev")
    await create(api, name)
    r = await post(
        api,
        "/provision",
        {"identity": name, "auth_type": "password", "password": "short"},
        key=None,
    )
    assert_bad_field(r, "password")
    late = await make_api(registry=_registry(), clock=lambda: NOW_US + 61 * 1_000_000)
    r = await post(late, "/provision", {"identity": name}, key=None)
    assert r.status_code == 403 and error_of(r)["code"] == "provisioning_expired"

    open_api = await make_api(registry=_registry(presented_identity=True, generate_identity=True))
    r = await post(open_api, "/provision", {"identity": uid("self")}, key=None)
    assert r.status_code == 201, r.text
    r = await post(open_api, "/provision", {}, key=None)
    assert r.status_code == 201, r.text
    generated = r.json()["identity"]
    row = (await open_api.get(f"/identities/{generated}")).json()
    assert row["status"] == "provisioned"
    # created and provisioned by the device itself, at one instant of a frozen clock:
    # that is contact (unlike an operator's create with a credential)
    assert row["provisioned_us"] == row["created_us"]
    assert row["lastseen_us"] == row["provisioned_us"] and row["online"] is True


# -- metrics ------------------------------------------------------------------------------


async def test_device_metrics_count_publishes(api: Api) -> None:
    start = (
        await api.get(
            "/metrics/devices",
            metric_name="publish_count",
            aggregate_fn="count",
            start_time=str(NOW_US - 60_000_000),
            end_time=str(NOW_US + 60_000_000),
            epoch="us",
        )
    ).json()
    base = sum(p["value"] for p in start["points"])
    name = uid("m")
    for n in (1, 3):
        r = await api.ingest(
            name, [{"timestamp": NOW_US, "values": {f"s{i}": i for i in range(n)}}]
        )
        assert r.status_code == 202
    await api.sync()
    params = {
        "start_time": str(NOW_US - 60_000_000),
        "end_time": str(NOW_US + 60_000_000),
        "epoch": "us",
        "aggregate_window": "1h",
    }
    r = await api.get(
        "/metrics/devices", metric_name="publish_count", aggregate_fn="count", **params
    )
    assert sum(p["value"] for p in r.json()["points"]) == base + 2
    r = await api.get(
        "/metrics/devices", metric_name="publish_resource_count", aggregate_fn="max", **params
    )
    assert max(p["value"] for p in r.json()["points"]) >= 3
    r = await api.get("/metrics/devices", metric_name="volume", **params)
    assert_bad_field(r, "metric_name")


async def test_created_with_a_credential_is_provisioned_but_not_seen(api: Api) -> None:
    """The operator provisioned it: it records the time and counts as a provisioning,
    but the device has not shown up (not online, no lastseen)."""
    name = uid("cred")
    out = await create(api, name, auth={"type": "token"})
    assert out["status"] == "provisioned" and out["token"]
    row = (await api.get(f"/identities/{name}")).json()
    assert row["online"] is False
    assert row["lastseen_us"] is None
    assert row["provisioned_us"] == row["created_us"]
    r = await post(api, "/identities", {"identity": uid("pw"), "auth": {"type": "password"}})
    assert_bad_field(r, "auth.password")
