"""Data the console's page tests make through the API (shared by their modules)."""

from __future__ import annotations

from typing import Any

from tests.console.harness import Console

TYPE = "console_hot"


def alarms_of_the_rule(console: Console) -> list[dict[str, Any]]:
    """The alarms of :func:`raise_alarms`'s rule, as the API lists them."""
    r = console.api.get("/alarms", params={"type": TYPE, "limit": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def raise_alarms(console: Console) -> list[dict[str, Any]]:
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
    got = console.wait(lambda: len(a := alarms_of_the_rule(console)) == 3 and a, "3 alarms")
    return list(got)
