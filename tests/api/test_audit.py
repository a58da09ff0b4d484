"""The audit trail: every API write recorded with who, what, before and after."""

from __future__ import annotations

import json
from typing import Any

from millrace.pipeline.topics import ALARMS, AUDIT
from tests.api.conftest import NOW_US, V1, Api, assert_bad_field, uid


async def _audits(api: Api, **params: Any) -> list[dict[str, Any]]:
    await api.sync()
    r = await api.get("/audits", key="operator", **params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_identity_writes_are_audited_with_before_and_after(api: Api) -> None:
    ident = uid("aud")
    r = await api.client.post(
        f"{V1}/identities",
        json={"identity": ident, "attributes": {"site": "north"}},
        headers=api.auth(api.operator),
    )
    assert r.status_code == 201, r.text
    r = await api.client.patch(
        f"{V1}/identities/{ident}",
        json={"attributes": {"site": "south"}},
        headers=api.auth(api.operator),
    )
    assert r.status_code == 200, r.text
    rows = await _audits(api, target_id=ident, sort="creation_time")
    assert [(a["action"], a["target_type"], a["status"]) for a in rows] == [
        ("created", "identity", "ok"),
        ("updated", "identity", "ok"),
    ]
    created, updated = rows
    assert created["before"] is None
    assert created["after"]["identity"] == ident
    assert created["after"]["attributes"]["site"] == "north"
    assert updated["before"]["attributes"]["site"] == "north"
    assert updated["after"]["attributes"]["site"] == "south"
    assert created["actor"].startswith("key:") and created["actor"].endswith(":test operator")
    assert created["actor_role"] == "operator"
    assert all("credential_hash" not in (a["after"] or {}) for a in rows)


async def test_refused_writes_are_audited_with_their_error_code(api: Api) -> None:
    ident = uid("aud")
    body = {"identity": ident}
    assert (
        await api.client.post(f"{V1}/identities", json=body, headers=api.auth(api.operator))
    ).status_code == 201
    r = await api.client.post(f"{V1}/identities", json=body, headers=api.auth(api.operator))
    assert r.status_code == 409
    r = await api.client.delete(f"{V1}/identities/{uid('nobody')}", headers=api.auth(api.operator))
    assert r.status_code == 404
    failed = await _audits(api, failed="true", limit=1000)
    statuses = {a["status"] for a in failed}
    assert {"conflict", "not_found"} <= statuses, statuses
    assert all(a["status"] != "ok" for a in failed)


async def test_api_key_audit_never_holds_the_secret(api: Api) -> None:
    name = uid("key")
    r = await api.client.post(
        f"{V1}/keys", json={"name": name, "role": "viewer"}, headers=api.auth(api.admin)
    )
    assert r.status_code == 201
    secret = r.json()["data"]["key"]
    key_id = r.json()["data"]["id"]
    r = await api.client.delete(f"{V1}/keys/{key_id}", headers=api.auth(api.admin))
    assert r.status_code == 204
    rows = await _audits(api, target_id=key_id, target_type="api_key", sort="creation_time")
    assert [a["action"] for a in rows] == ["create", "delete"]
    # the key's public record (id, name, role and its times), never the secret or a hash
    public = {"id": key_id, "name": name, "role": "viewer"}
    for shown in (rows[0]["after"], rows[1]["before"]):
        assert public.items() <= shown.items(), shown
        assert set(shown) - set(public) <= {
            "created_us",
            "expires_us",
            "last_used_us",
            "rotated_us",
        }
    # nothing on the audit topic holds the plaintext key
    for p in range(api.log.partitions(AUDIT)):
        for rec in await api.log.read(AUDIT, p, 0, 100_000):
            assert secret.encode() not in rec.value


async def test_device_traffic_and_reads_are_not_audited(api: Api) -> None:
    before = api.log.appended.get(AUDIT, 0)
    ident = uid("dev")
    r = await api.ingest(ident, [{"timestamp": NOW_US - 1_000_000, "values": {"temp": 1.0}}])
    assert r.status_code in (200, 202), r.text
    await api.sql("SELECT 1")
    await api.get("/identities")
    assert api.log.appended.get(AUDIT, 0) == before


async def test_audit_filters_and_roles(api: Api) -> None:
    assert (await api.get("/audits", key="viewer")).status_code == 403
    assert_bad_field(await api.get("/audits", key="operator", sort="priority"), "sort")
    assert_bad_field(
        await api.get("/audits", key="operator", start_time="2025-01-02", end_time="2025-01-01"),
        "end_time",
    )
    ident = uid("aud")
    await api.client.post(f"{V1}/identities", json={"identity": ident}, headers=api.auth(api.admin))
    rows = await _audits(api, target_id=ident, actor="nobody")
    assert rows == []
    rows = await _audits(api, target_id=ident)
    assert len(rows) == 1 and rows[0]["actor_role"] == "admin"
    one = await api.get(f"/audits/{rows[0]['id']}", key="operator")
    assert one.status_code == 200 and one.json()["data"]["target_id"] == ident
    assert (await api.get("/audits/nope", key="operator")).status_code == 404
    json.dumps(rows)  # JSON-clean


async def test_activities_list_alarms_and_audits_together(api: Api) -> None:
    ident = uid("act")
    r = await api.client.post(
        f"{V1}/identities", json={"identity": ident}, headers=api.auth(api.operator)
    )
    assert r.status_code == 201
    alarm = {
        "alarm_id": uid("al_"),
        "ts_us": NOW_US + 5,
        "type": "RAISED",
        "rule_id": "hot",
        "rule_type": "high_temperature",
        "identity": ident,
        "signal": "temp",
        "priority": 200,
        "message": "hot",
        "trigger_value": 99.5,
        "requires_ack": True,
    }
    await api.ctx.publisher.publish(ALARMS, [(alarm["alarm_id"], alarm)])
    await api.sync()

    async def kinds(**params: Any) -> list[tuple[str, str]]:
        r = await api.get("/activities", key="operator", identity=ident, **params)
        assert r.status_code == 200, r.text
        return [(a["activity_type"], a["id"]) for a in r.json()["data"]]

    [(k1, id1), (k2, _)] = await kinds()
    assert (k1, id1) == ("alarm", alarm["alarm_id"])  # newest first
    assert k2 == "audit"
    assert await kinds(activity_type="alarm") == [("alarm", alarm["alarm_id"])]
    assert [k for k, _ in await kinds(activity_type="audit")] == ["audit"]
    assert await kinds(priority_range="100,255") == [("alarm", alarm["alarm_id"])]
    assert [k for k, _ in await kinds(action="created")] == ["audit"]
    assert [k for k, _ in await kinds(sort="priority")] == ["audit", "alarm"]
    r = await api.get("/activities", key="operator", identity=ident)
    first = r.json()["data"][0]
    assert first["alarm"]["trigger_value"] == 99.5 and first["priority"] == 200
    assert r.json()["data"][1]["audit"]["target_id"] == ident
    assert_bad_field(
        await api.get("/activities", key="operator", activity_type="x"), "activity_type"
    )
    assert_bad_field(await api.get("/activities", key="operator", sort="x"), "sort")
