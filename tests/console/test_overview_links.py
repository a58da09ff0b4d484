"""Every figure of the overview links to its page (readiness and lag to the system
status page), in a real browser against a real ``millrace run``: each link is followed
and the page it lands on shows the detail — the readiness checks the API reports, the
lag of each stage, and the heartbeats of the runners."""

from __future__ import annotations

import pytest

from tests.console.harness import Console

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: figure -> (where it leads, an element of that page)
FIGURES = {
    "ready": ("/system#readiness", "[data-testid=ready-checks]"),
    "ingest-rate": ("/live", "[data-testid=live-grid]"),
    "lag": ("/system#lag", "[data-testid=stage-lag]"),
    "deviations": ("/services", "[data-testid=service-table]"),
    "alarms": ("/alarms?state=active", "[data-testid=alarm-table]"),
    "disk": ("/archive", "[data-testid=replay-table]"),
}


def link_of(console: Console, testid: str) -> str | None:
    return console.js(
        "const e = document.querySelector(`[data-testid=${arguments[0]}]`);"
        " const a = e && e.closest('a'); return a ? a.getAttribute('href') : null;",
        testid,
    )


def table_text(console: Console, testid: str) -> str:
    return console.text(f"[data-testid={testid}] tbody")


def test_every_figure_links_to_its_page(console: Console) -> None:
    console.sign_in()
    console.open("/")
    console.wait(lambda: console.text("[data-testid=ready]") == "ready", "readiness shown")
    assert {t: link_of(console, t) for t in FIGURES} == {t: f[0] for t, f in FIGURES.items()}
    for testid, (href, landmark) in FIGURES.items():
        console.open("/")
        console.click(f"a[href='{href}'] [data-testid={testid}]")
        path = href.split("#")[0]
        console.wait(
            lambda path=path: path in console.driver.current_url, f"{testid} led to {href}"
        )
        console.find(landmark)


def test_system_page_shows_checks_lag_and_heartbeats(console: Console) -> None:
    console.sign_in()
    console.open("/system")
    console.wait(lambda: console.text("[data-testid=system-ready]") == "ready", "ready")
    checks = console.wait(
        lambda: (t := table_text(console, "ready-checks")).count("ok") >= 3 and t, "3 checks"
    )
    for name in ("log", "store", "lag"):
        assert name in checks
    assert "writable" in checks and "answers" in checks
    lags = table_text(console, "stage-lag")
    assert "processing (projections)" in lags and "alarm runner" in lags
    # the engine's own heartbeat (millrace run runs the connect and process roles)
    runners = console.api.get("/resource-runners").json()["data"]
    assert runners, "the engine publishes heartbeats"
    console.wait(
        lambda: all(r["runner"] in table_text(console, "runner-table") for r in runners),
        "every runner the API lists",
    )
    assert "healthy" in table_text(console, "runner-table")
    # the overview lists the same heartbeats, each linking here
    console.open("/")
    box = console.wait(lambda: console.all("[data-testid=runners] a"), "the heartbeat links")
    assert all(a.get_attribute("href").endswith("/system#heartbeats") for a in box)
