"""HTTP ingest with ``Idempotency-Key`` (issue 14 item 1): a retry answers like the
first call and stores nothing twice, in this API process and across processes (the
fold drops the batch id derived from identity and key)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from millrace.api.idempotency import IdempotentAnswers
from millrace.pipeline.batches import http_batch_id
from tests.api.conftest import NOW_US, Api, assert_bad_field, uid

KEY = "Idempotency-Key"


def body(*values: float) -> list[dict[str, Any]]:
    return [{"timestamp": NOW_US - 100 + i, "values": {"v": v}} for i, v in enumerate(values)]


async def stored(api: Api, identity: str) -> tuple[list[float], int, float]:
    """Raw values, and the 1m aggregates' count and sum, as the store holds them."""
    rows = api.ctx.store.execute(
        "SELECT value FROM millrace.readings WHERE identity = {i:String} ORDER BY ts, value",
        params={"i": identity},
    ).rows
    agg = api.ctx.store.execute(
        "SELECT sum(count), sum(sum) FROM millrace.agg_1m WHERE identity = {i:String}",
        params={"i": identity},
    ).rows[0]
    return [float(r[0]) for r in rows], int(agg[0]), float(agg[1] or 0.0)


async def test_a_retry_answers_like_the_first_call_and_stores_once(api: Api) -> None:
    identity = uid()
    sent = body(1.5, 2.5, 4.0)
    first = await api.ingest(identity, sent, headers={KEY: "k-1"})
    again = await api.ingest(identity, sent, headers={KEY: "k-1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert await api.telemetry_count() == 1  # the retry did not reach the log
    await api.sync()
    retry_after_fold = await api.ingest(identity, sent, headers={KEY: "k-1"})
    assert retry_after_fold.json() == first.json()
    await api.sync()
    values = [s["values"]["v"] for s in sent]
    assert await stored(api, identity) == (sorted(values), len(values), sum(values))
    (record,) = await api.telemetry_records()
    assert record["batch_id"] == http_batch_id(identity, "k-1")


async def test_another_api_process_appends_again_and_the_fold_drops_it(api: Api) -> None:
    """A retry reaching an API process that never saw the key (or this one after a
    restart): answered 202 afresh, appended, and dropped by the telemetry fold."""
    identity = uid()
    sent = body(3.0, 5.0)
    assert (await api.ingest(identity, sent, headers={KEY: "k-2"})).status_code == 202
    api.ctx.idempotency = IdempotentAnswers(api.ctx.clock)  # a process that forgot
    assert (await api.ingest(identity, sent, headers={KEY: "k-2"})).status_code == 202
    assert await api.telemetry_count() == 2
    await api.sync()
    assert await stored(api, identity) == ([3.0, 5.0], 2, 8.0)


async def test_the_same_key_with_another_body_is_422(api: Api) -> None:
    identity = uid()
    assert (await api.ingest(identity, body(1.0), headers={KEY: "k-3"})).status_code == 202
    r = await api.ingest(identity, body(2.0), headers={KEY: "k-3"})
    assert_bad_field(r, KEY, 422)
    assert await api.telemetry_count() == 1


async def test_the_same_key_for_another_identity_is_another_batch(api: Api) -> None:
    a, b = uid(), uid()
    for identity in (a, b):
        assert (await api.ingest(identity, body(7.0), headers={KEY: "shared"})).status_code == 202
    await api.sync()
    assert (await stored(api, a))[0] == [7.0] and (await stored(api, b))[0] == [7.0]


async def test_without_a_key_every_request_is_a_batch(api: Api) -> None:
    identity = uid()
    for _ in range(2):
        assert (await api.ingest(identity, body(1.0))).status_code == 202
    records = await api.telemetry_records()
    assert len({r["batch_id"] for r in records}) == 2
    await api.sync()
    assert (await stored(api, identity))[1] == 2


async def test_the_same_json_spelled_otherwise_is_the_same_body(api: Api) -> None:
    identity = uid()
    headers = {KEY: "k-4", "content-type": "application/json"}
    path = f"/api/v1/identities/{identity}/data"
    auth = api.auth(api._key("operator"))
    one = b'[{"timestamp": %d, "values": {"a": 1, "b": 2}}]' % (NOW_US - 1)
    two = b'[ {"values":{"b":2,"a":1},"timestamp":%d} ]' % (NOW_US - 1)
    r1 = await api.client.post(path, content=one, headers={**headers, **auth})
    r2 = await api.client.post(path, content=two, headers={**headers, **auth})
    assert r1.status_code == r2.status_code == 202
    assert await api.telemetry_count() == 1


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "é", "tab\tin"])
async def test_a_malformed_key_is_400_naming_the_header(api: Api, bad: str) -> None:
    r = await api.client.post(
        f"/api/v1/identities/{uid()}/data",
        content=b'[{"timestamp": 1, "values": {"v": 1}}]',
        headers={
            **api.auth(api._key("operator")),
            "content-type": "application/json",
            KEY: bad.encode(),  # bytes: httpx sends a non-ASCII value as it is
        },
    )
    assert_bad_field(r, KEY)
    assert await api.telemetry_count() == 0


async def test_a_refused_first_call_is_not_remembered(api: Api) -> None:
    identity = uid()
    bad = [{"timestamp": NOW_US, "values": {"v": float("nan")}}]
    r = await api.client.post(
        f"/api/v1/identities/{identity}/data",
        content=b'[{"timestamp": %d, "values": {"v": NaN}}]' % NOW_US,
        headers={**api.auth(api._key("operator")), "content-type": "application/json", KEY: "k5"},
    )
    assert r.status_code == 400, bad
    ok = await api.ingest(identity, body(1.0), headers={KEY: "k5"})
    assert ok.status_code == 202


async def test_concurrent_retries_append_once(api: Api) -> None:
    identity = uid()
    sent = body(9.0)
    answers = await asyncio.gather(
        *(api.ingest(identity, sent, headers={KEY: "k-6"}) for _ in range(5))
    )
    assert {r.status_code for r in answers} == {202}
    assert len({r.text for r in answers}) == 1
    assert await api.telemetry_count() == 1


async def test_the_window_ends(make_api: Any) -> None:
    now = [NOW_US]
    api = await make_api(clock=lambda: now[0])
    identity = uid()
    assert (await api.ingest(identity, body(1.0), headers={KEY: "k-7"})).status_code == 202
    now[0] += 86_400 * 1_000_000 + 1
    # past the window the key is free: another body is a new batch, not a 422
    assert (await api.ingest(identity, body(2.0), headers={KEY: "k-7"})).status_code == 202
    assert await api.telemetry_count() == 2
