"""HTTP ingest's fast path (``api.ingest_columns``) against the general path: for any
batch the fast path accepts, pydantic and ``validate_samples`` accept it too and the
columns are the very ones ``from_samples`` builds; regular batches take the fast path;
anything irregular or refused goes to the general path (None)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.api.context import ApiSettings
from millrace.api.errors import ApiError
from millrace.api.ingest_columns import plain_columns
from millrace.api.routers.ingest import SAMPLES, _rules, validate_samples
from millrace.pipeline import events
from millrace.pipeline.telemetry_columns import from_samples

NOW = 1_767_225_600_000_000
CTX: Any = SimpleNamespace(settings=ApiSettings(max_batch_samples=50), clock=lambda: NOW)

names = st.sampled_from(["a", "b.c", "x:1", "_y", "bad name", ".dot", "z" * 129, "ok-2"])
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.booleans(),
    st.text(max_size=5),
    st.text(min_size=16_380, max_size=16_400, alphabet="\U0001f600a"),
    st.none(),
    st.lists(st.integers(), max_size=1),
)
stamps = st.one_of(
    st.integers(min_value=NOW - 3_600_000_000, max_value=NOW + 3_600_000_000),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.booleans(),
    st.floats(allow_nan=False),
)
qualities = st.one_of(
    st.integers(min_value=-3, max_value=300), st.integers(min_value=-(2**40), max_value=2**40)
)


@st.composite
def batches(draw: st.DrawFn) -> Any:
    """Mostly regular batches (one template of signal types), some mutated."""
    template = draw(st.dictionaries(names, values, min_size=1, max_size=4))
    rows = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        sample: dict[str, Any] = {"timestamp": draw(stamps)}
        same = draw(st.booleans()) or draw(st.booleans())
        sample["values"] = (
            {k: _like(draw, v) for k, v in template.items()}
            if same
            else draw(st.dictionaries(names, values, max_size=4))
        )
        if draw(st.booleans()):
            sample["quality"] = draw(st.one_of(qualities, st.booleans()))
        if draw(st.integers(min_value=0, max_value=20)) == 0:
            sample["extra"] = 1
        rows.append(sample)
    return draw(st.one_of(st.just(rows), st.just(rows), st.just({"not": "a list"})))


def _like(draw: st.DrawFn, value: Any) -> Any:
    """Another value of the type of ``value`` (mostly): regular columns."""
    if isinstance(value, bool):
        return draw(st.booleans())
    if isinstance(value, float):
        return draw(st.floats(allow_nan=False, allow_infinity=False))
    if isinstance(value, int):
        return draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))
    if isinstance(value, str):
        return draw(st.text(max_size=5))
    return value


def general(document: Any) -> tuple[Any, int] | None:
    """What the general path makes of ``document``: (columns, readings) or None."""
    try:
        samples = SAMPLES.validate_python(document)
    except Exception:
        return None
    try:
        readings = validate_samples(samples, CTX)
    except ApiError:
        return None
    rows = [events.sample(s.timestamp, s.values, s.quality) for s in samples]
    return from_samples(rows), readings


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_what_the_fast_path_accepts_the_general_path_accepts_alike(document: Any) -> None:
    fast = plain_columns(document, _rules(CTX), NOW)
    if fast is None:
        return
    slow = general(document)
    assert slow is not None, "the fast path accepted a batch the general path refuses"
    assert fast[1] == slow[1]
    assert fast[0] == slow[0]


@pytest.mark.parametrize(
    "row",
    [
        {"t": 1.5, "on": True, "name": "\u00e9\U0001f600", "n": 2**63 - 1},
        {"t": -0.0, "on": False, "name": "", "n": -(2**63)},
    ],
)
def test_a_regular_batch_takes_the_fast_path(row: dict[str, Any]) -> None:
    document = [
        {"timestamp": NOW - i, "values": dict(row), **({"quality": i} if i % 2 else {})}
        for i in range(5)
    ]
    fast = plain_columns(document, _rules(CTX), NOW)
    assert fast is not None
    assert fast == general(document)
    columns, readings = fast
    assert readings == 20 and columns.signals == list(row)
    assert columns.longs == [row["n"]] * 5


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d[1]["values"].update(t=2),  # a signal of two types
        lambda d: d[1]["values"].pop("t"),  # irregular signals
        lambda d: d[1]["values"].update(t=math.nan),
        lambda d: d[1].update(quality=True),
        lambda d: d[1].update(quality=2**31),
        lambda d: d[1].update(timestamp=NOW + 2 * 86_400_000_000),
        lambda d: d[1].update(extra=1),
        lambda d: d[1]["values"].update(t=None),
    ],
)
def test_anything_irregular_goes_the_general_way(change: Any) -> None:
    document = [{"timestamp": NOW - i, "values": {"t": 1.0, "on": True}} for i in range(3)]
    change(document)
    assert plain_columns(document, _rules(CTX), NOW) is None
