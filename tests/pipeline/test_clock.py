"""One clock helper (issue 13, item 3): ``pipeline.clock.now_us`` is the only place that
reads the wall clock in microseconds; everyone else imports it (or takes a ``clock``
argument defaulting to it)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from millrace.pipeline.clock import now_us

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "connectors", "projections", "api")
#: the wall clock in µs written out by hand, or a private copy of the helper
OWN_CLOCK = re.compile(
    r"time\.time_ns\(\)\s*//\s*1_?000\b"
    r"|time\.time\(\)\s*\*\s*(?:1e6|1_000_000|1000000)\b"
    r"|def _now_us\("
)


def test_now_us_is_the_wall_clock_in_microseconds() -> None:
    before = time.time_ns() // 1000
    now = now_us()
    after = time.time_ns() // 1000
    assert isinstance(now, int)
    assert before <= now <= after


def test_no_module_reads_the_clock_on_its_own() -> None:
    offenders = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "pipeline/clock.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if OWN_CLOCK.search(line):
                    offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == [], "use pipeline.clock.now_us"
