"""Counting readings without decoding equals counting the decoded batch; a damaged
datum answers None (the archiver then decodes), never a wrong count or an exception."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.archive.count import layout_known, telemetry_readings
from millrace.pipeline.archive.format import count_readings, topic_schema
from millrace.pipeline.archive.window import WindowBuilder
from millrace.pipeline.codec import default_codec
from millrace.pipeline.events import telemetry_batch
from millrace.pipeline.log.base import Record

values = st.dictionaries(
    st.text(max_size=12),
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=30),
    ),
    max_size=30,
)
samples = st.lists(
    st.fixed_dictionaries(
        {
            "ts_us": st.integers(0, 2**62),
            "values": values,
            "quality": st.integers(-(2**31), 2**31 - 1),
        }
    ),
    max_size=6,
)


def event(s: list[dict[str, Any]], identity: str) -> dict[str, Any]:
    return {"identity": identity, "source": "t", "received_us": 1, "samples": s}


def test_the_current_schema_has_the_known_layout() -> None:
    assert layout_known()


@settings(max_examples=300)
@given(samples, st.text(max_size=20))
def test_counts_like_the_decoded_batch(s: list[dict[str, Any]], identity: str) -> None:
    payload = default_codec().encode("telemetry", event(s, identity))
    assert payload[:10] == topic_schema("telemetry").header
    assert telemetry_readings(payload[10:]) == count_readings(event(s, identity))


@given(samples, st.data())
def test_a_damaged_datum_is_none_or_still_counted_right(
    s: list[dict[str, Any]], data: st.DataObject
) -> None:
    datum = default_codec().encode("telemetry", event(s, "d"))[10:]
    cut = data.draw(st.integers(0, max(len(datum) - 1, 0)))
    got = telemetry_readings(datum[:cut])
    assert got is None or got <= count_readings(event(s, "d"))


def test_the_window_counts_fast_and_slow_paths_alike() -> None:
    codec = default_codec()
    ev = event([{"ts_us": 5, "values": {"a": 1.0, "b": True, "c": "x"}, "quality": 0}], "d")
    fast = Record("telemetry", 0, 0, 5, b"d", codec.encode("telemetry", ev))
    odd = Record("telemetry", 0, 1, 6, b"d", b"not avro")
    b = WindowBuilder(fast, 0, 3_600_000_000)
    b.add(fast)
    b.add(odd)
    assert b.finish()[1].readings == 3


@settings(max_examples=300)
@given(samples, st.text(min_size=1, max_size=20))
def test_counts_column_wise_batches_like_the_decoded_batch(
    s: list[dict[str, Any]], identity: str
) -> None:
    built = telemetry_batch(identity, s, received_us=1, batch_id="b")
    payload = default_codec().encode("telemetry", built)
    assert telemetry_readings(payload[10:]) == count_readings(built)
    assert count_readings(built) == sum(len(x["values"]) for x in s)
