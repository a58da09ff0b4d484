"""POST /config/validate, templates and schema, GET /connectors."""

from __future__ import annotations

import yaml

from tests.api.conftest import V1, Api

BAD = """
service: plant
connections:
  sim:
    protocol: simulator
    devices: -3
    colour: blue
  weird:
    protocol: carrier-pigeon
endpoints:
  - connection: sim
    identity: sim-0
    signal: s
  - connection: sim
    identity: sim-0
    signal: s
  - connection: nowhere
    identity: x
    signal: y
"""


async def test_validate_lists_every_violation_with_its_path(api: Api) -> None:
    r = await api.client.post(
        f"{V1}/config/validate",
        content=BAD,
        headers={"content-type": "application/yaml", **api.auth(api.viewer)},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "failed"
    paths = {(v["level"], v["json_path"]) for v in body["violations"]}
    assert {
        ("error", "$.connections.sim.devices"),
        ("error", "$.connections.sim.colour"),
        ("error", "$.connections.weird.protocol"),
        ("error", "$.endpoints[0].connection"),  # sim is invalid: its endpoints are too
        ("error", "$.endpoints[2].connection"),
    } <= paths, body


async def test_validate_accepts_json_and_passes_a_good_file(api: Api) -> None:
    r = await api.client.get(f"{V1}/config/templates/simulator", headers=api.auth(api.viewer))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    doc = yaml.safe_load(r.text)
    r = await api.client.post(f"{V1}/config/validate", json=doc, headers=api.auth(api.viewer))
    assert r.json() == {"status": "passed", "violations": []}
    doc["endpoints"].append(dict(doc["endpoints"][0]))  # a duplicate identity/signal
    r = await api.client.post(f"{V1}/config/validate", json=doc, headers=api.auth(api.viewer))
    assert r.json()["status"] == "failed"
    assert r.json()["violations"][0]["json_path"] == "$.endpoints[1].signal"


async def test_validate_rejects_garbage_bodies(api: Api) -> None:
    h = api.auth(api.viewer)
    r = await api.client.post(
        f"{V1}/config/validate",
        content=b"{not json",
        headers={"content-type": "application/json", **h},
    )
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "body"
    r = await api.client.post(f"{V1}/config/validate", content=b"a: [1,", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert r.json()["violations"][0]["description"].startswith("not valid YAML")
    r = await api.client.post(f"{V1}/config/validate", content=b"\xff\xfe", headers=h)
    assert r.status_code == 400


async def test_templates_schema_and_unknown_protocol(api: Api) -> None:
    r = await api.get("/config/templates")
    assert "simulator" in r.json()["data"]
    r = await api.get("/config/templates/carrier-pigeon")
    assert r.status_code == 404 and "protocol" in r.json()["error"]["message"]
    r = await api.get("/config/schema")
    schema = r.json()
    assert schema["properties"]["connections"]["type"] == "object"
    assert "SimulatorConnection" in schema["$defs"]


async def test_connectors_list_is_empty_without_commissioning(api: Api) -> None:
    r = await api.get("/connectors")
    assert r.status_code == 200 and r.json() == {"data": []}
    r = await api.get("/connectors/none")
    assert r.status_code == 404
