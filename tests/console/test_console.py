"""The console in a real browser against a real ``millrace run`` with the simulator:
sign in, the overview's live ingest rate, live data updating without a reload, the
explorer's chart against the API's own aggregates and readings, and a viewer who is
offered no write (and whose forged write the API refuses)."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from millrace.api.console.resolution import MAX_POINTS
from tests.console.harness import ADMIN_PASSWORD, Console

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HIST = "console-hist"


def number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def element_id(console: Console, css: str) -> int:
    """NiceGUI's id of the element drawn as ``css`` (its DOM id is ``c<id>``)."""
    return int(console.find(css).get_attribute("id").lstrip("c"))


def test_sign_in_with_password_and_key_and_refused(console: Console) -> None:
    console.open("/live")  # not signed in: sent to sign in, and back after
    console.wait(lambda: "/login?next=/live" in console.driver.current_url, "sign-in redirect")
    console.type_into("input[name=username]", "admin")
    console.type_into("input[name=password]", "not-the-password")
    console.click("button[name=sign-in]")
    console.wait(lambda: "refused" in console.text("[role=alert]"), "the refusal")
    console.type_into("input[name=password]", ADMIN_PASSWORD)
    console.find("input[name=password]").send_keys(Keys.ENTER)  # the keyboard signs in too
    console.wait(lambda: console.driver.current_url.endswith("/live"), "back at /live")
    assert "admin (admin)" in console.text("header")
    # keyboard: the first Tab reaches the skip link, which leads to the page's content
    ActionChains(console.driver).send_keys(Keys.TAB).perform()
    assert console.js("return document.activeElement.innerText") == "Skip to main content"
    ActionChains(console.driver).send_keys(Keys.ENTER).perform()
    console.wait(lambda: console.js("return document.activeElement.tagName") == "MAIN", "focus")
    console.sign_out()
    console.open("/")
    console.wait(lambda: "/login" in console.driver.current_url, "signed out stays out")


def test_overview_shows_the_ingest_rate_live(console: Console) -> None:
    console.sign_in()
    console.open("/")
    console.wait(lambda: console.text("[data-testid=ready]") == "ready", "readiness shown")
    marker = console.js("return window.__marker = Math.random()")
    rate = console.wait(
        lambda: (n := number(console.text("[data-testid=ingest-rate]"))) and n > 0 and n,
        "a positive ingest rate",
    )

    def points() -> list[float]:
        # one read in the page: the SVG is replaced at every refresh
        line = console.js(
            "const p = document.querySelector('[data-testid=rate-chart] polyline');"
            " return p ? p.getAttribute('points') : '';"
        )
        return [float(xy.split(",")[1]) for xy in line.split()]

    first = len(console.wait(points, "the rate's first point"))
    console.wait(lambda: len(points()) > first + 1, "the rate sparkline growing")
    # the figures move on their own: the same document (no reload) shows new rates
    assert console.js("return window.__marker") == marker
    assert all(0 <= y <= 80 for y in points()) and rate > 0
    console.keep_screenshot("console-overview")
    # every shown connection of the simulator is running
    assert "connector sim [simulator]: running" in console.text("main")
    # the rate links to its page; a write (pause/resume) is offered to the admin
    assert console.find("a[href='/live'] [data-testid=ingest-rate]")
    assert console.all("[data-write]"), "the admin should be offered writes"


def test_live_data_updates_without_reload(console: Console) -> None:
    console.sign_in()
    console.open("/live?identity=c-1&signal=*_0")
    marker = console.js("return window.__marker = Math.random()")
    grid = element_id(console, "[data-testid=live-grid]")
    rows_js = (
        f"const out = []; getElement({grid}).api.forEachNode(n => out.push(n.data)); return out;"
    )

    def rows() -> list[dict[str, Any]]:
        return list(console.js(rows_js))

    first = console.wait(rows, "the latest values")
    assert {r["identity"] for r in first} == {"c-1"}
    assert all(r["signal"].endswith("_0") for r in first)
    assert all(r["quality"] in ("good",) or r["quality"].startswith("bad") for r in first)
    before = {r["key"]: r["timestamp"] for r in first}
    console.wait(
        lambda: any(r["timestamp"] != before.get(r["key"]) for r in rows()),
        "a value updated from the live stream",
    )
    assert console.js("return window.__marker") == marker, "the page was reloaded"
    assert "live updates" in console.text("[data-testid=live-received]")


def _shape(t_ms: int) -> float:
    """A slow wave with a little deterministic jitter: each minute has a spread."""
    return round(50 + 20 * math.sin(t_ms / 3_600_000 * math.pi) + (t_ms // 10_000) % 7 - 3, 2)


def _ingest_history(console: Console) -> tuple[int, int]:
    """Readings of ``HIST``/v every 10 s over the 6 whole hours before the current hour
    (several per minute, so each 1m bucket has a min, max and average); the range."""
    end_ms = (int(time.time()) // 3600) * 3600 * 1000
    start_ms = end_ms - 6 * 3600 * 1000
    stamps = list(range(start_ms, end_ms, 10_000))
    for i in range(0, len(stamps), 500):
        body = [{"timestamp": t * 1000, "values": {"v": _shape(t)}} for t in stamps[i : i + 500]]
        r = console.api.post(f"/identities/{HIST}/data", json=body)
        assert r.status_code == 202, r.text

    def folded() -> bool:
        r = console.api.post(
            "/sql",
            json={"query": f"SELECT count() FROM millrace.readings WHERE identity = '{HIST}'"},
        )
        return r.status_code == 200 and int(r.json()["rows"][0][0]) == len(stamps)

    console.wait(folded, "the history folded", timeout=120)
    return start_ms, end_ms


def _chart(console: Console) -> tuple[dict[str, str], dict[str, list[list[float]]]]:
    console.find("[data-testid=explorer-chart]")
    # one read of the three (a re-render between three reads gave start None, bucket 1m)
    got = console.js(
        "const e = document.querySelector('[data-testid=explorer-chart]');"
        " const d = e ? e.dataset : {}; return [d.start, d.end, d.bucket];"
    )
    attrs = dict(zip(("start", "end", "bucket"), got, strict=True))
    series = console.js(
        f"const o = getElement({element_id(console, '[data-testid=explorer-chart]')})"
        ".chart.getOption(); const out = {}; o.series.forEach(s => out[s.id] = s.data);"
        " return out;"
    )
    return attrs, series


def test_explorer_chart_matches_the_api(console: Console) -> None:
    start, end = _ingest_history(console)
    console.sign_in()
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start / 1000))
    iso_end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(end / 1000))
    console.open(f"/explorer?identity={HIST}&signals=v&from={iso}&to={iso_end}")
    attrs, series = console.wait(
        lambda: all((got := _chart(console))[0].values()) and got, "the chart drawn"
    )
    assert attrs == {"start": str(start), "end": str(end), "bucket": "1m"}
    api = console.api.get(
        f"/identities/{HIST}/signals/v/aggregates",
        params={
            "bucket": "1m",
            "fields": "min,max,avg",
            "start_time": start,
            "end_time": end,
            "epoch": "ms",
            "limit": 10_000,
            "order": "asc",
        },
    ).json()["data"]["points"]
    assert len(api) == 360 and len(series["v:avg"]) == len(api) <= MAX_POINTS
    times = [p["timestamp"] for p in api]
    for sid, field in (("v:avg", "avg"), ("v:min", "min")):
        assert [t for t, _ in series[sid]] == times, sid
        assert [v for _, v in series[sid]] == pytest.approx([p[field] for p in api]), sid
    widths = [p["max"] - p["min"] for p in api]
    assert [t for t, _ in series["v:band"]] == times
    assert [w for _, w in series["v:band"]] == pytest.approx(widths)
    console.keep_screenshot("console-explorer")

    # zooming in (the keyboard-reachable button) asks the API again for the middle half
    console.click("button[name=zoom-in]")
    attrs, series = console.wait(
        lambda: all((got := _chart(console))[0].values()) and got[0]["start"] != str(start) and got,
        "the zoomed chart",
    )
    lo, hi = start + (end - start) // 4, end - (end - start) // 4
    assert (int(attrs["start"]), int(attrs["end"])) == (lo, hi)
    inside = [p for p in api if lo <= p["timestamp"] < hi]
    assert [t for t, _ in series["v:avg"]] == [p["timestamp"] for p in inside]

    # a short range: raw readings, exactly the API's
    short_end = start + 10 * 60_000
    console.open(
        f"/explorer?identity={HIST}&signals=v&from={iso}"
        f"&to={time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(short_end / 1000))}"
    )
    attrs, series = console.wait(
        lambda: all((got := _chart(console))[0].values()) and got[0]["bucket"] == "raw" and got,
        "the raw chart",
    )
    raw = console.api.get(
        f"/identities/{HIST}/signals",
        params={
            "signals": "v",
            "start_time": start,
            "end_time": short_end,
            "epoch": "ms",
            "limit": 10_000,
            "order": "asc",
        },
    ).json()["data"]["signals"]["v"]
    assert len(raw) == 60
    assert series["v:value"] == [[p["timestamp"], p["value"]] for p in raw]


def test_viewer_is_offered_no_write_and_a_forged_one_is_refused(console: Console) -> None:
    password = console.make_user("console-viewer", "viewer")
    console.sign_in("console-viewer", password)
    # each page's last drawn part, so what is absent is looked for once all is there
    drawn = {
        "/": lambda: "connector sim" in console.text("main"),
        "/live": lambda: "live updates" in console.text("[data-testid=live-received]"),
        "/explorer": lambda: console.find("[data-testid=explorer-chart]"),
    }
    for path, done in drawn.items():
        console.open(path)
        console.wait(done, f"{path} drawn")
        assert not console.all("[data-write]"), f"a write offered to a viewer on {path}"
    assert "console-viewer (viewer)" in console.text("header")
    token = console.api.post(
        "/login", json={"username": "console-viewer", "password": password}
    ).json()["access_token"]
    forged = console.api.post("/pipeline/pause", headers={"Authorization": f"Bearer {token}"})
    assert forged.status_code == 403, forged.text
    assert console.api.get("/status").json()["data"]["paused"] is False
    console.sign_out()


def test_the_api_answers_as_before_beside_the_console(console: Console) -> None:
    import httpx

    with httpx.Client(base_url=console.base, timeout=30) as anon:
        missing = anon.get("/no-such-page")  # the API's own JSON 404, not a console page
        assert missing.status_code == 404 and missing.json()["error"]["code"]
        assert anon.get("/api/v1/identities").status_code == 401
        assert anon.post("/health/live").status_code == 405
        assert anon.get("/health/live").status_code == 200
        assert anon.get("/docs").status_code == 200
        assert anon.get("/openapi.json").json()["info"]["title"] == "millrace"
        # a console page without a session: to sign-in, and back afterwards
        page = anon.get("/explorer", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/explorer"
        assert "<html" in anon.get("/login").text.lower()


#: what is animating in the page: a running animation makes the browser draw frames
ANIMATIONS_JS = """
return document.getAnimations().filter((a) => a.playState === 'running').map((a) => {
  const t = a.effect && a.effect.target;
  return (a.animationName || a.transitionProperty || 'animation') + ' on '
    + (t ? t.tagName + '.' + t.className : '?');
});
"""


def test_a_page_at_rest_animates_nothing(console: Console) -> None:
    """A page that has drawn its data draws no frames while nothing changes: Quasar's
    loading bar followed every XHR, and over long polling one is always pending — the
    bar moved at the top of every page for as long as it was open (~20 % of a core of
    a tablet's browser per tab)."""
    from tests.console.test_tablet import settle

    console.sign_in()
    for path in ("/", "/alarms", "/identities"):
        console.open(path)
        settle(console)
        # the long poll is pending now, and stays so (the engine answers it with data)
        time.sleep(1.0)
        assert console.js(ANIMATIONS_JS) == [], path
    console.sign_out()
