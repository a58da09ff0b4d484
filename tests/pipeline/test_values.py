"""One value-kind codec (issue 13, item 3): what the telemetry processor writes in
``kind``/``value``/``text``, :func:`millrace.pipeline.values.typed_value` reads back as the
value that was sent, and no other module defines the kinds or a decoder."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.processors.base import Event
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.values import (
    KIND_BOOL,
    KIND_INT,
    KIND_NUMBER,
    KIND_STRING,
    kind_of,
    typed_value,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000_000

scalar = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)


def _expected(v: Any) -> Any:
    if isinstance(v, bool | str | int):
        return v  # an int exactly, even beyond 2**53 (its own kind since TelemetryBatch v5)
    return float(v) if math.isfinite(v) else None


@settings(deadline=None)  # the first example pays for numpy and pyarrow warming up
@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=4), scalar, min_size=1))
def test_what_the_processor_writes_reads_back_as_sent(values: dict[str, Any]) -> None:
    batch = {
        "identity": "d",
        "source": "t",
        "received_us": T0,
        "samples": [{"ts_us": T0, "values": values, "quality": 0}],
    }
    out = TelemetryProcessor().process([Event("telemetry", 0, 0, T0, b"d", batch)])
    rows = out.tables["readings"].to_pylist()
    got = {r["signal"]: typed_value(r["kind"], r["value"], r["text"]) for r in rows}
    assert got == {k: _expected(v) for k, v in values.items()}
    assert {r["signal"]: r["kind"] for r in rows} == {k: kind_of(v) for k, v in values.items()}


def test_kinds() -> None:
    assert (kind_of(1.5), kind_of(7), kind_of(True), kind_of("on"), kind_of(2**64)) == (
        KIND_NUMBER,
        KIND_INT,
        KIND_BOOL,
        KIND_STRING,
        KIND_NUMBER,  # beyond 64 bits: a double, as the batch carries it
    )
    assert typed_value(KIND_INT, float(2**53), "") == 2**53
    assert typed_value(KIND_INT, float(2**53 + 1), str(2**53 + 1)) == 2**53 + 1
    assert typed_value(KIND_INT, 20.5, "") == 20.5  # a float in a bucket of ints
    assert typed_value(KIND_NUMBER, None, "") is None  # ClickHouse's JSON null for NaN
    assert typed_value(KIND_NUMBER, math.inf, "") is None
    assert typed_value(KIND_BOOL, 0.0, "") is False
    assert typed_value(KIND_STRING, 0.0, "on") == "on"


def test_no_other_module_defines_the_kinds_or_a_decoder() -> None:
    own = re.compile(
        r"^KIND_(NUMBER|BOOL|STRING|INT)\b.*=|^def (typed_value|_typed|reported_value)\("
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for pkg in ("pipeline", "connectors", "projections", "api")
        for path in sorted((ROOT / pkg).rglob("*.py"))
        if path.relative_to(ROOT).as_posix() != "pipeline/values.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if own.search(line)
    ]
    assert offenders == []
