"""The console's operations pages in a real browser against a real ``millrace run``
(simulator): alarms raised by a rule are acknowledged in the console (one, then a
selection with each item's result) and the API reports it; a desired state set in the
console goes pending and is acknowledged by the simulator; an API key made in the
console works, and is refused once revoked there."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.harness import Console
from tests.console.seed import TYPE, alarms_of_the_rule, raise_alarms

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def click_when_ready(console: Console, css: str) -> None:
    """Click ``css`` once it takes clicks (a dialog's buttons do not while it opens)."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        ElementNotInteractableException,
    )

    def attempt() -> bool:
        try:
            console.click(css)
        except (ElementNotInteractableException, ElementClickInterceptedException):
            return False
        return True

    console.wait(attempt, f"{css} clickable")


def test_alarm_acknowledged_in_the_console(console: Console) -> None:
    raised = raise_alarms(console)
    first = raised[0]["alarm_id"]
    console.sign_in()
    console.open(f"/alarms?alarm={first}")
    console.wait(lambda: "pending" in console.text("[data-testid=alarm-status]"), "pending")
    console.type_into("input[name=alarm-note]", "seen on the floor")
    console.click("button[name=acknowledge]")
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
        lambda: (
            "acknowledged by user:admin: seen on the floor"
            in console.text("[data-testid=alarm-history]")
        ),
        "the acknowledgement in the alarm's history",
    )

    # the list, filtered by type: select all three, acknowledge; the one already
    # acknowledged is refused (409), the others done, each shown
    console.open(f"/alarms?type={TYPE}")
    console.wait(lambda: len(console.all("[data-testid=alarm-table] tbody tr")) == 3, "3 rows")
    console.click("[data-testid=alarm-table] thead .q-checkbox")
    console.click("button[name=batch-acknowledge]")
    results = console.wait(
        lambda: len(r := console.all("[data-testid=batch-result]")) == 3 and r, "3 results"
    )
    statuses = sorted(e.get_attribute("data-status") for e in results)
    assert statuses == ["200", "200", "409"]
    console.wait(
        lambda: all(
            a["management"]["status"] == "acknowledged" for a in alarms_of_the_rule(console)
        ),
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
    console.click("button[name=set-setpoint_2]")

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


def test_admin_creates_and_revokes_a_key_in_the_console(console: Console) -> None:
    console.sign_in()
    console.open("/users")
    console.find("[data-testid=user-table] tbody tr")
    console.type_into("input[name=key-name]", "console-made")
    console.type_into("input[name=key-role]", "operator")
    console.click("button[name=create-key]")
    secret = console.wait(lambda: console.text("[data-testid=new-key]"), "the new key's secret")
    me = console.api.get("/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["data"]["role"] == "operator", me.text
    made = [k for k in console.api.get("/keys").json()["data"] if k["name"] == "console-made"]
    assert len(made) == 1 and secret not in str(made)
    click_when_ready(console, "[data-testid=new-key] ~ button")  # Done
    console.wait(lambda: not console.all(".q-dialog"), "the dialog closed")
    console.type_into("input[name=key-id]", made[0]["id"])
    console.click("button[name=revoke-key]")
    console.wait(
        lambda: (
            console.api.get("/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
        ),
        "the revoked key refused",
    )
