"""Column-wise telemetry (TelemetryBatch v5, pipeline/telemetry_columns.py): rows and
columns carry the same readings, every earlier version still reads (stored records of
each in tests/pipeline/fixtures/telemetry), and the decoder plus the fold never crash
on any bytes: what they cannot use is a dead letter with its reason."""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.pipeline.batches import CONTENT_PREFIX, batch_key
from millrace.pipeline.codec import default_codec
from millrace.pipeline.errors import DecodeError
from millrace.pipeline.events import sample, telemetry_batch
from millrace.pipeline.processors.base import Event
from millrace.pipeline.processors.decoding import decode_and_process
from millrace.pipeline.processors.telemetry import TelemetryProcessor, flatten_all
from millrace.pipeline.telemetry_columns import (
    count,
    from_samples,
    iter_samples,
    problem,
)
from millrace.schemas import HISTORY_DIR

CODEC = default_codec()
FIXTURES = Path(__file__).parent / "fixtures" / "telemetry"
T = 1_700_000_000_000_000

#: the readings every fixture holds, (ts, signal) -> (value, quality); written by
#: pre-v5 producers as rows (v1 has no quality: 0)
FIXTURE_ROWS = [
    (T + 1, 0, {"temp": 21.5, "run": True, "mode": "auto", "count": 2**53 + 1}),
    (T + 2, -(2**31), {"temp": 21.75, "count": -7}),
    (T + 3, 0, {"temp": -math.inf, "mode": "", "run": False}),
]

values = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "é"]),
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=5),
    ),
    max_size=4,
)
rows_strategy = st.lists(
    st.tuples(st.integers(0, 2**40), st.integers(-(2**31), 2**31 - 1), values), max_size=6
)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (a == b or (a != a and b != b))


def _readings(rows: list[tuple[int, int, dict[str, Any]]]) -> Counter[tuple[Any, ...]]:
    return Counter(
        (ts, q, s, type(v).__name__, repr(v)) for ts, q, vals in rows for s, v in vals.items()
    )


def event(value: dict[str, Any], offset: int = 0) -> Event:
    raw = CODEC.encode("telemetry", value)
    return Event("telemetry", 0, offset, T, b"k", CODEC.decode("telemetry", raw), len(raw), raw)


# -- rows and columns carry the same readings


@settings(max_examples=200)
@given(rows_strategy)
def test_rows_become_columns_and_back(rows: list[tuple[int, int, dict[str, Any]]]) -> None:
    built = telemetry_batch("d", [sample(ts, v, q) for ts, q, v in rows], received_us=1)
    decoded = CODEC.decode("telemetry", CODEC.encode("telemetry", built))
    assert decoded == built or any(isinstance(x, float) and x != x for x in built["doubles"])
    assert problem(decoded) is None
    assert count(decoded) == sum(len(v) for _, _, v in rows)
    assert _readings(list(iter_samples(decoded))) == _readings([r for r in rows if r[2]])
    # and the row-wise batch (versions 1-4) reads the same
    row_wise = {
        "identity": "d",
        "received_us": 1,
        "samples": [sample(*r[:1], r[2], r[1]) for r in rows],
    }
    assert _readings(list(iter_samples(row_wise))) == _readings([r for r in rows if r[2]])


def test_integers_keep_their_own_kind_and_exact_value() -> None:
    cols = from_samples([sample(T, {"n": 2**53 + 1, "big": 2**64, "f": 1.0, "b": True})])
    assert cols.signals == ["n", "big", "f", "b"]
    assert cols.kinds == [3, 0, 0, 1]
    assert cols.longs == [2**53 + 1] and cols.doubles == [float(2**64), 1.0]
    assert cols.counts is None  # dense: one value per signal and row


def test_a_sparse_batch_names_its_rows() -> None:
    cols = from_samples([sample(T, {"a": 1.0}), sample(T + 1, {"b": 2.0, "a": 3.0})])
    assert (cols.signals, cols.counts, cols.rows) == (["a", "b"], [2, 1], [0, 1, 1])
    assert cols.doubles == [1.0, 3.0, 2.0]


def test_numpy_columns_are_stored_as_lists() -> None:
    np = pytest.importorskip("numpy")
    built = telemetry_batch(
        "d",
        received_us=1,
        ts_us=np.array([T], dtype=np.int64),
        qualities=np.zeros(1, dtype=np.int32),
        signals=["x", "y"],
        kinds=np.zeros(2, dtype=np.int64),
        doubles=np.array([1.5, 2.5]),
    )
    assert built["ts_us"] == [T] and type(built["ts_us"][0]) is int
    assert built["doubles"] == [1.5, 2.5] and type(built["doubles"][0]) is float
    assert CODEC.decode("telemetry", CODEC.encode("telemetry", built)) == built


# -- every earlier version reads (stored records)


def fixture(name: str) -> dict[str, Any]:
    return CODEC.decode("telemetry", (FIXTURES / name).read_bytes())


@pytest.mark.parametrize(
    "name",
    [
        "TelemetryBatch.v1.bin",
        "TelemetryBatch.v2.bin",
        "TelemetryBatch.v3.bin",
        "TelemetryBatch.v4.bin",
        "TelemetryBatch.v4-batch-id.bin",
        "TelemetryBatch.v5.bin",
    ],
)
def test_stored_records_of_every_version_read(name: str) -> None:
    decoded = fixture(name)
    assert decoded["identity"] == "plant/press-1" and decoded["received_us"] == T + 10
    assert problem(decoded) is None
    want = [(ts, 0 if "v1" in name else q, v) for ts, q, v in FIXTURE_ROWS]
    got = list(iter_samples(decoded))
    assert [(ts, q) for ts, q, _ in got] == [(ts, q) for ts, q, _ in want]
    for (_, _, g), (_, _, w) in zip(got, want, strict=True):
        assert g.keys() == w.keys() and all(_same(g[k], w[k]) for k in w), (g, w)
    # the fold's rows: each reading once, the integer exact in its own column of values
    flat = flatten_all([Event("telemetry", 0, 0, T, b"k", decoded, 1)])
    assert flat.dead == []
    readings = flat.readings.to_pylist()
    assert len(readings) == 9
    assert {(r["signal"], r["ts"]) for r in readings} == {
        (s, ts) for ts, _, v in FIXTURE_ROWS for s in v
    }


def test_every_history_schema_has_a_stored_record() -> None:
    versions = {p.name.split(".")[1] for p in HISTORY_DIR.glob("TelemetryBatch.v*.avsc")}
    stored = {p.name.split(".")[1].split("-")[0] for p in FIXTURES.glob("*.bin")}
    assert versions <= stored


def test_the_dense_v5_record_reads() -> None:
    decoded = fixture("TelemetryBatch.v5-dense.bin")
    assert decoded["counts"] == [] and decoded["kinds"] == [0, 3]
    assert list(iter_samples(decoded)) == [
        (T + 1, 0, {"a": 1.0, "b": 2}),
        (T + 2, 0, {"a": 3.0, "b": 4}),
    ]


def _digest(data: bytes) -> str:
    h = hashlib.sha256()
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)
    return h.hexdigest()[:32]


@pytest.mark.parametrize("version", [2, 3, 4])
def test_an_old_batch_keeps_the_content_id_it_had(version: int) -> None:
    """Before v5, an id-less batch was named by its datum in the schema then current
    (v4); a batch folded then and restored now must be recognised."""
    data = (FIXTURES / f"TelemetryBatch.v{version}.bin").read_bytes()
    decoded = CODEC.decode("telemetry", data)
    v4 = json.loads((HISTORY_DIR / "TelemetryBatch.v4.avsc").read_text())
    old = CODEC.decode("telemetry", data)
    as_v4 = {f["name"]: old[f["name"]] for f in v4["fields"]}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(v4), as_v4)
    want = CONTENT_PREFIX + _digest(out.getvalue())
    if version == 4:
        assert want == CONTENT_PREFIX + _digest(data[10:])
    assert batch_key(decoded, data) == want
    assert batch_key(decoded, b"") == want


# -- bad columns are dead letters with the reason


GOOD = telemetry_batch(
    "d",
    [sample(T, {"a": 1.0, "b": "x"}), sample(T + 1, {"a": 2.0})],
    received_us=T,
    batch_id="b",
)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"qualities": [0]}, "qualities: 1 qualities for 2 rows"),
        ({"kinds": [0]}, "kinds: 1 kinds for 2 signals"),
        ({"kinds": [0, 7]}, "kinds[1]: unknown kind 7"),
        ({"doubles": [1.0]}, "doubles: 1 values for 2"),
        ({"strings": []}, "strings: 0 values for 1"),
        ({"counts": [2]}, "counts: 1 counts for 2 signals"),
        ({"rows": [0, 1, 5]}, "rows[2]: row 5 of 2"),
        ({"rows": [0, 1]}, "rows: 2 rows for 3 values"),
        ({"counts": [], "rows": [0]}, "rows: given without counts"),
        ({"signals": ["a", ""]}, "signals[1]: empty signal name"),
        ({"ts_us": [T, -1]}, "ts_us[1]: -1 is outside"),
        ({"samples": [sample(T, {"z": 1})]}, "samples: a batch carries rows"),
    ],
)
def test_bad_columns_are_dead_letters_with_the_reason(change: dict[str, Any], reason: str) -> None:
    bad = {**GOOD, "batch_id": "bad", **change}
    assert problem(GOOD) is None
    assert reason in (problem(bad) or "")
    out = TelemetryProcessor().process_reading([event(GOOD, 0), event(bad, 1)], None)
    assert [d["reason"] for d in out.deadletters] == [problem(bad)]
    assert out.deadletters[0]["error_type"] == "InvalidTelemetry"
    assert out.tables["readings"].num_rows == 3  # the good batch is applied


class _Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.timestamp_us, self.key, self.value = offset, T, b"k", value


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_the_decoder_and_the_fold_never_crash_on_any_bytes(data: st.DataObject) -> None:
    valid = CODEC.encode("telemetry", GOOD)
    kind = data.draw(st.sampled_from(["random", "header+random", "mutated", "truncated"]))
    if kind == "random":
        payload = data.draw(st.binary(max_size=200))
    elif kind == "header+random":
        payload = valid[:10] + data.draw(st.binary(max_size=200))
    elif kind == "mutated":
        at = data.draw(st.integers(10, len(valid) - 1))
        payload = valid[:at] + bytes([data.draw(st.integers(0, 255))]) + valid[at + 1 :]
    else:
        payload = valid[: data.draw(st.integers(0, len(valid)))]
    try:
        decoded = CODEC.decode("telemetry", payload)
    except DecodeError:
        decoded = None
    if decoded is not None:
        problem(decoded)  # answers, whatever the columns say
    out = decode_and_process(CODEC, TelemetryProcessor(), "telemetry", 0, [_Rec(0, payload)])
    readings = out.tables.get("readings")
    n = 0 if readings is None else readings.num_rows
    if out.deadletters:
        assert n == 0 and out.deadletters[0]["reason"]
    else:
        assert decoded is not None and problem(decoded) is None and n == count(decoded)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=100),
    st.lists(st.floats(allow_nan=False), max_size=50),
    st.lists(st.text(max_size=5), max_size=50),
    st.lists(st.booleans(), max_size=50),
)
def test_column_arrays_encode_as_fastavro_does(
    longs: list[int], doubles: list[float], strings: list[str], booleans: list[bool]
) -> None:
    """The writer packs arrays of one type at once (numpy varints from 48 items on)."""
    built = {
        **telemetry_batch("d", received_us=1),
        "longs": longs,
        "ts_us": longs,
        "doubles": doubles,
        "strings": strings,
        "signals": strings,
        "booleans": booleans,
    }
    out = io.BytesIO()
    schema = json.loads((HISTORY_DIR.parent / "telemetry.avsc").read_text())
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), built)
    assert CODEC.encode("telemetry", built)[10:] == out.getvalue()


_cell = {
    0: st.floats(allow_nan=False),
    1: st.booleans(),
    2: st.text(max_size=3),
    3: st.integers(-(2**63), 2**63 - 1),
}


@st.composite
def _dense_parts(draw: st.DrawFn) -> list[Any]:
    from millrace.pipeline.telemetry_columns import VALUE_FIELDS, Columns

    kinds = draw(st.lists(st.sampled_from(list(VALUE_FIELDS)), min_size=1, max_size=6))
    signals = [f"s{j}" for j in range(len(kinds))]
    parts = []
    for p in range(draw(st.integers(1, 4))):
        rows = draw(st.integers(1, 3))
        by_kind: dict[int, list[Any]] = {k: [] for k in VALUE_FIELDS}
        for kind in kinds:  # signal after signal, each with a value per row
            by_kind[kind] += draw(st.lists(_cell[kind], min_size=rows, max_size=rows))
        ts = [T + 10 * p + r for r in range(rows)]
        parts.append(Columns(ts, [0] * rows, signals, kinds, None, None, *by_kind.values()))
    return parts


@settings(max_examples=80, deadline=None)
@given(_dense_parts())
def test_concat_rows_is_the_parts_rows_one_after_the_other(parts: list[Any]) -> None:
    from millrace.pipeline.telemetry_columns import concat_rows, samples_of

    merged = concat_rows(parts)
    assert merged is not None and merged.counts is None
    as_batch = telemetry_batch("d", received_us=1, **merged.fields())
    assert problem(as_batch) is None
    want = [s for p in parts for s in samples_of(telemetry_batch("d", received_us=1, **p.fields()))]
    assert samples_of(as_batch) == want


def test_concat_rows_refuses_parts_of_other_signals_or_sparse_ones() -> None:
    from millrace.pipeline.telemetry_columns import Columns, concat_rows

    a = Columns([T], [0], ["x"], [0], None, None, [1.0])
    assert concat_rows([a, Columns([T + 1], [0], ["y"], [0], None, None, [2.0])]) is None
    assert concat_rows([a, Columns([T + 1], [0], ["x"], [3], None, None, longs=[2])]) is None
    assert concat_rows([a, Columns([T + 1], [0], ["x"], [0], [1], [0], [2.0])]) is None
