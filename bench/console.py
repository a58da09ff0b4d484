"""The web console in a real browser: page load and a 10,000-point chart draw.

A ``millrace run`` with the simulator (tests/console/harness.py: the browser tests'
engine and headless Debian Chromium), signed in as the admin. Page load: wall time
from asking the browser for the page until its content is drawn with data (overview:
readiness shown; live data: the grid's first rows counted; explorer: the chart element
drawn), each page ``loads`` times, median and max. Chart draw: 10,000 points (5 series
of 2,000) set on the explorer's own ECharts instance,
timed in the page from ``setOption`` to ECharts' ``finished`` event, median and max of
5 draws.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from tests.console.harness import Console, browser_missing, chrome, engine

Figures = dict[str, tuple[float, str]]

PAGES = {
    "overview": ("/", "[data-testid=ready]", "ready"),
    "live": ("/live", "[data-testid=live-received]", "signals"),
    "explorer": ("/explorer", "[data-testid=explorer-info]", ""),
}

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
            console.sign_in()
            for name, (path, css, expect) in PAGES.items():
                console.open(path)  # first load: assets into the browser's cache
                times = []
                for _ in range(loads):
                    t = time.perf_counter()
                    driver.get(base + path)
                    console.wait(lambda c=css, e=expect: e in console.text(c), f"{path} drawn")
                    times.append((time.perf_counter() - t) * 1000)
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
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for key, (value, unit) in run(5, Path(tmp)).items():
            print(f"{key}: {value:.1f} {unit}")
