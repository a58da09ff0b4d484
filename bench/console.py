"""The web console in a real browser: page load and a 10,000-point chart draw.

A ``millrace run`` with the simulator (tests/console/harness.py: the browser tests'
engine and headless Debian Chromium), signed in as the admin, with one installed
service (so the services list has a row to draw).

Page load: time from the browser starting the navigation (``performance.timeOrigin``)
until the page's content is drawn *with its data* (:data:`PAGES`: overview: the
readiness, lag, alarm and disk figures filled in (the ingest rate is a difference of
two polls of the engine's counters: it follows at the second poll, 2 s later); live
data: a row in the grid; explorer: a signal's points in the chart; alarms: the pager's
total; identities: a row; services: the installed service's row), each page ``loads``
times, median and max. A script the browser runs at the start of every document (CDP
``Page.addScriptToEvaluateOnNewDocument``) checks the condition every 5 ms and notes
the time: the figure holds neither WebDriver's command overhead nor a test's polling
interval. Assets are cached (one load first), as for an operator moving between pages.

Chart draw: 10,000 points (5 series of 2,000) set on the explorer's own ECharts
instance, timed in the page from ``setOption`` to ECharts' ``finished`` event, median
and max of 5 draws.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.console.harness import Console, browser_missing, chrome, engine

Figures = dict[str, tuple[float, str]]

#: a small service for the services list (its data is not what the bench measures)
SERVICE = """\
service: bench-console
description: the console bench's service
connections:
  bench-sim:
    protocol: simulator
    devices: 1
    signals: 1
    interval_ms: 1000
    identity_prefix: "bench-"
"""

#: page -> (path, JavaScript expression that holds once its data is drawn)
PAGES: dict[str, tuple[str, str]] = {
    "overview": (
        "/",
        "['ready', 'lag', 'alarms', 'disk'].every(t => {"
        " const e = document.querySelector(`[data-testid=${t}]`);"
        " return e && e.innerText.trim() && e.innerText.trim() !== '…'; })",
    ),
    "live": ("/live", "!!document.querySelector('[data-testid=live-grid] .ag-row')"),
    "explorer": (
        "/explorer?identity={identity}&signals={signal}",
        "/ [1-9][0-9]* points/.test(text('[data-testid=explorer-info]'))",
    ),
    "alarms": ("/alarms", "/ in all/.test(text('[data-testid=pager]'))"),
    "identities": (
        "/identities",
        "!!document.querySelector('[data-testid=identity-table] tbody td a')",
    ),
    "services": (
        "/services",
        "text('[data-testid=service-table] tbody').includes('bench-console')",
    ),
}

#: installed on every new document: notes when the page's condition first holds
WATCH = """
(() => {
  const text = (css) => { const e = document.querySelector(css); return e ? e.innerText : ''; };
  const drawn = () => { try { return %s; } catch (e) { return false; } };
  const check = () => {
    if (drawn()) { window.__benchDrawn = performance.now(); return; }
    setTimeout(check, 5);
  };
  check();
})();
"""

DRAW_JS = """
const done = arguments[arguments.length - 1];
const chart = getElement(arguments[0]).chart;
const series = [];
const t0 = Date.now() - 2000 * 1000;
for (let s = 0; s < 5; s++) {
  const data = new Array(2000);
  for (let i = 0; i < 2000; i++) data[i] = [t0 + i * 1000, Math.sin(i / 50 + s) * 10 + s * 5];
  series.push({type: 'line', symbol: 'none', data: data, name: 'bench ' + s});
}
const start = performance.now();
chart.on('finished', function handler() {
  chart.off('finished', handler);
  done(performance.now() - start);
});
chart.setOption({animation: false, xAxis: {type: 'time', min: null, max: null},
                 series: series}, {notMerge: false});
"""


def prepare(console: Console) -> dict[str, str]:
    """Install the bench's service, register an identity and wait for the data the
    pages draw; a signal of the simulator for the explorer."""
    r = console.api.post("/services", json={"commissioning": SERVICE})
    assert r.status_code in (200, 201, 409), r.text

    def a_reading() -> Any:
        items = console.api.get("/signals/latest", params={"limit": 1000}).json()["data"]
        return next((i for i in items if i["identity"].startswith("c-")), None)

    item = console.wait(a_reading, "a reading of the simulator")
    r = console.api.post("/identities", json={"identity": "bench-console-device"})
    assert r.status_code in (200, 201, 409), r.text
    console.wait(
        lambda: console.api.get("/identities", params={"limit": 1}).json()["items"],
        "an identity in the registry",
    )
    return {"identity": item["identity"], "signal": item["signal"]}


def page_load(console: Console, path: str, condition: str, loads: int) -> list[float]:
    """Milliseconds from navigation start until ``condition`` held, ``loads`` times."""
    driver = console.driver
    script = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": WATCH % condition}
    )["identifier"]
    try:
        console.open(path)  # first load: assets into the browser's cache
        times = []
        for _ in range(loads):
            driver.get(console.base + path)
            drawn = console.wait(
                lambda: console.js("return window.__benchDrawn"), f"{path} drawn with data"
            )
            times.append(float(drawn))
            time.sleep(0.3)  # let the page settle: the next load starts from a quiet tab
        return times
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script})


def run(loads: int, workdir: Path) -> Figures:
    missing = browser_missing()
    if missing:
        print(f"console bench skipped: {missing}")
        return {}
    figs: Figures = {}
    with engine(workdir) as base:
        driver = chrome()
        console = Console(base, driver)
        try:
            chosen = prepare(console)
            console.sign_in()
            for name, (path, condition) in PAGES.items():
                url = path.format(**{k: quote(v, safe="") for k, v in chosen.items()})
                times = page_load(console, url, condition, loads)
                figs[f"console_load_{name}_ms"] = (statistics.median(times), "ms")
                figs[f"console_load_{name}_max_ms"] = (max(times), "ms")
            console.open("/explorer")
            chart = console.find("[data-testid=explorer-chart]").get_attribute("id")
            driver.set_script_timeout(30)
            draws = [float(driver.execute_async_script(DRAW_JS, int(chart[1:]))) for _ in range(5)]
            figs["console_chart_10k_draw_ms"] = (statistics.median(draws), "ms")
            figs["console_chart_10k_draw_max_ms"] = (max(draws), "ms")
        finally:
            console.close()
            driver.quit()
    return figs


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for key, (value, unit) in run(int(sys.argv[1]) if sys.argv[1:] else 5, Path(tmp)).items():
            print(f"{key}: {value:.1f} {unit}")
