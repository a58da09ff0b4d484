"""The console's pages for a viewer, and analyst SQL, in a real browser against a real
``millrace run``: the SQL page charts a result with a time column and shows the API's
refusals; a viewer is offered no write on the operations pages and a write it forges is
refused by the API."""

from __future__ import annotations

import pytest

from tests.console.harness import Console
from tests.console.seed import raise_alarms

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_sql_draws_a_chart_of_a_time_column_and_shows_refusals(console: Console) -> None:
    console.sign_in()
    console.open("/sql")
    console.click("button[name=run-sql]")
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
    console.click("button[name=run-sql]")
    console.wait(
        lambda: "system.tables is not allowed" in console.text("[data-testid=sql-error]"),
        "the API's refusal",
    )
    assert console.text("[data-testid=sql-meta]") == ""


def test_viewer_sees_no_write_on_these_pages_and_forged_writes_are_refused(
    console: Console,
) -> None:
    password = console.make_user("pages-viewer", "viewer")
    alarm_id = raise_alarms(console)[0]["alarm_id"]
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
