"""The console's operations pages in a real browser against a real ``millrace run``
(simulator): alarms raised by a rule are acknowledged in the console (one, then a
selection with each item's result) and the API reports it; a desired state set in the
console goes pending and is acknowledged by the simulator; a viewer is offered no write
on these pages and a write it forges is refused by the API."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.harness import Console

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TYPE = "console_hot"


def _alarms(console: Console) -> list[dict[str, Any]]:
    r = console.api.get("/alarms", params={"type": TYPE, "limit": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def _raise_alarms(console: Console) -> list[dict[str, Any]]:
    """The three alarms (one per simulated device) of a rule that always fires."""
    rule = {
        "id": "console-hot",
        "kind": "limit",
        "type": TYPE,
        "identity": "c-.*",
        "signal": "temperature_0",
        "high": -1000,
        "priority": 210,
        "message": "{identity} hot at {value}",
    }
    r = console.api.post("/alarm-rules", json=rule)
    assert r.status_code in (201, 409), r.text  # 409: an earlier test defined it
    return list(console.wait(lambda: len(got := _alarms(console)) == 3 and got, "3 alarms"))


def test_alarm_acknowledged_in_the_console(console: Console) -> None:
    raised = _raise_alarms(console)
    first = raised[0]["alarm_id"]
    console.sign_in()
    console.open(f"/alarms?alarm={first}")
    console.wait(lambda: "pending" in console.text("[data-testid=alarm-status]"), "pending")
    console.type_into("input[name=alarm-note]", "seen on the floor")
    console.find("button[name=acknowledge]").click()
    got = console.wait(
        lambda: (
            (a := console.api.get(f"/alarms/{first}").json())["management"]["status"]
            == "acknowledged"
            and a
        ),
        "the API to report the alarm acknowledged",
    )
    assert got["management"]["acknowledged_by"] == "user:admin"
    assert got["management"]["acknowledge_note"] == "seen on the floor"
    console.wait(
        lambda: any(
            "acknowledged by user:admin: seen on the floor" in e.text
            for e in console.all("[data-testid=history-item]")
        ),
        "the acknowledgement in the alarm's history",
    )

    # the list, filtered by type: select all three, acknowledge; the one already
    # acknowledged is refused (409), the others done, each shown
    console.open(f"/alarms?type={TYPE}")
    console.wait(lambda: len(console.all("[data-testid=alarm-table] tbody tr")) == 3, "3 rows")
    console.find("[data-testid=alarm-table] thead .q-checkbox").click()
    console.find("button[name=batch-acknowledge]").click()
    results = console.wait(
        lambda: len(r := console.all("[data-testid=batch-result]")) == 3 and r, "3 results"
    )
    statuses = sorted(e.get_attribute("data-status") for e in results)
    assert statuses == ["200", "200", "409"]
    console.wait(
        lambda: all(a["management"]["status"] == "acknowledged" for a in _alarms(console)),
        "every alarm acknowledged in the API",
    )
    assert "acknowledged" in console.text("[data-testid=alarm-table]")


def test_desired_state_set_in_the_console_is_acknowledged(console: Console) -> None:
    r = console.api.post("/identities", json={"identity": "c-2", "tags": {"line": ["b"]}})
    assert r.status_code in (200, 201), r.text
    r = console.api.put("/resources/setpoint_2", json={"format": "number", "settable": True})
    assert r.status_code in (200, 201), r.text
    console.sign_in()
    console.open("/identities?identity=c-2")
    console.wait(lambda: console.all("input[name=desired-setpoint_2]"), "the setpoint's box")
    console.type_into("input[name=desired-setpoint_2]", "42.5")
    console.find("button[name=set-setpoint_2]").click()

    def state() -> dict[str, Any]:
        return dict(console.api.get("/identities/c-2/state").json()["setpoint_2"])

    console.wait(lambda: state()["set"] == 42.5, "the API to hold the desired value")
    word = "[data-testid=state-word-setpoint_2]"
    # pending until the simulator reports the value back, then acknowledged: the page
    # shows what the API says without a reload
    console.wait(
        lambda: console.find(word).get_attribute("data-state") in ("pending", "acknowledged"),
        "the value pending or acknowledged",
    )
    got = console.wait(
        lambda: (s := state())["acknowledged_us"] and not s["pending"] and s, "acknowledged"
    )
    assert got["reported"] == 42.5
    console.wait(
        lambda: console.find(word).get_attribute("data-state") == "acknowledged",
        "the page to show it acknowledged",
    )
    assert "line: b" in console.text("[data-testid=identity-tags]")


def test_sql_draws_a_chart_of_a_time_column_and_shows_refusals(console: Console) -> None:
    console.sign_in()
    console.open("/sql")
    console.find("button[name=run-sql]").click()
    console.wait(lambda: "rows" in console.text("[data-testid=sql-meta]"), "the result")
    chart = int(console.find("[data-testid=sql-chart]").get_attribute("id").lstrip("c"))
    names = console.js(
        f"return getElement({chart}).chart.getOption().series.map(s => s.name).sort()"
    )
    api = console.api.post(
        "/sql",
        json={
            "query": "SELECT DISTINCT signal FROM millrace.readings"
            " WHERE ts > now() - INTERVAL 1 HOUR ORDER BY signal"
        },
    ).json()["rows"]
    # the example groups by minute and signal: one line per signal (at most 8)
    assert names == sorted(r[0] for r in api)[:8] and names
    paste_sql = (
        "const e = getElement(arguments[0]).editor;"
        "e.dispatch({changes: {from: 0, to: e.state.doc.length, insert: arguments[1]}});"
    )
    editor = int(console.find("[data-testid=sql-editor]").get_attribute("id").lstrip("c"))
    console.js(paste_sql, editor, "SELECT * FROM system.tables")
    console.find("button[name=run-sql]").click()
    console.wait(
        lambda: "system.tables is not allowed" in console.text("[data-testid=sql-error]"),
        "the API's refusal",
    )
    assert console.text("[data-testid=sql-meta]") == ""


def test_admin_creates_and_revokes_a_key_in_the_console(console: Console) -> None:
    console.sign_in()
    console.open("/users")
    console.find("[data-testid=user-table] tbody tr")
    console.type_into("input[name=key-name]", "console-made")
    console.type_into("input[name=key-role]", "operator")
    console.find("button[name=create-key]").click()
    secret = console.wait(lambda: console.text("[data-testid=new-key]"), "the new key's secret")
    me = console.api.get("/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["data"]["role"] == "operator", me.text
    made = [k for k in console.api.get("/keys").json()["data"] if k["name"] == "console-made"]
    assert len(made) == 1 and secret not in str(made)
    console.find("[data-testid=new-key] ~ button").click()  # Done
    console.type_into("input[name=key-id]", made[0]["id"])
    console.find("button[name=revoke-key]").click()
    console.wait(
        lambda: (
            console.api.get("/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
        ),
        "the revoked key refused",
    )


def test_viewer_sees_no_write_on_these_pages_and_forged_writes_are_refused(
    console: Console,
) -> None:
    password = console.make_user("pages-viewer", "viewer")
    alarm_id = _raise_alarms(console)[0]["alarm_id"]
    r = console.api.post("/identities", json={"identity": "c-0"})
    assert r.status_code in (200, 201, 409), r.text
    console.api.put("/resources/setpoint_2", json={"format": "number", "settable": True})
    console.sign_in("pages-viewer", password)
    drawn = {
        "/alarms": "[data-testid=alarm-table] tbody tr",
        f"/alarms?alarm={alarm_id}": "[data-testid=history-item]",
        "/identities": "[data-testid=identity-table] tbody tr",
        "/identities?identity=c-0": "[data-testid=state-setpoint_2]",
        "/services": "[data-testid=service-table] tbody tr",
        "/services?service=console": "[data-testid=resource-table] tbody tr",
        "/sql": "[data-testid=sql-editor]",
        "/archive": "[data-testid=replay-table]",
    }
    for path, last in drawn.items():
        console.open(path)
        console.find(last)
        assert not console.all("[data-write]"), f"a write offered to a viewer on {path}"
        assert not console.all("input[name^=desired-]"), path
    console.open("/activities")  # audits are the operator's: the page says so
    assert "may not see this page" in console.text("main")
    token = console.api.post(
        "/login", json={"username": "pages-viewer", "password": password}
    ).json()["access_token"]
    as_viewer = {"Authorization": f"Bearer {token}"}
    forged = [
        console.api.post(f"/alarms/{alarm_id}/acknowledge", json={}, headers=as_viewer),
        console.api.post("/alarms/batch/discard", json={"ids": [alarm_id]}, headers=as_viewer),
        console.api.post("/identities/c-0/state", json={"setpoint_2": 1}, headers=as_viewer),
        console.api.post("/identities/c-0/lock", headers=as_viewer),
        console.api.post("/services/console/disable", headers=as_viewer),
        console.api.post("/restore/time", json={"start_time": 0, "end_time": 1}, headers=as_viewer),
    ]
    assert [f.status_code for f in forged] == [403] * len(forged), [f.text for f in forged]
    assert console.api.get("/identities/c-0").json()["status"] != "locked"
