"""Signal queries: raw readings, 1m/5m/1h aggregates, latest values."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
import pyarrow.compute as pc
from fastapi import APIRouter, Depends, Path, Query

from millrace.api import models, signal_json
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, viewer
from millrace.api.errors import bad_request
from millrace.api.pagination import page_meta
from millrace.api.responses import JsonResponse
from millrace.api.routers.ingest import IDENTITY_PATTERN
from millrace.api.routing import StrictRoute
from millrace.api.timeparams import Epoch, parse_time
from millrace.api.users.scope import within
from millrace.projections import queries
from millrace.projections.queries import AGG_FIELDS, TimeRange
from millrace.projections.store.base import ProjectionStore

router = APIRouter(tags=["signals"], route_class=StrictRoute)


class Order(StrEnum):
    asc = "asc"
    desc = "desc"


class Bucket(StrEnum):
    m1 = "1m"
    m5 = "5m"
    h1 = "1h"


class SortKey(StrEnum):
    identity = "identity"
    signal = "signal"


IdentityPath = Annotated[str, Path(pattern=IDENTITY_PATTERN)]
StartTime = Annotated[
    str | None, Query(description="inclusive; ISO-8601 or epoch number (see `epoch`)")
]
EndTime = Annotated[str | None, Query(description="exclusive; ISO-8601 or epoch number")]
EpochQ = Annotated[
    Epoch | None,
    Query(
        description="unit of epoch times in and out: s, ms or us; absent = ISO-8601 out, seconds in"
    ),
]
Limit = Annotated[int, Query(ge=1, le=10_000, description="rows per page (per signal)")]
Page = Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")]


def _time_range(start_time: str | None, end_time: str | None, epoch: Epoch | None) -> TimeRange:
    tr = TimeRange(
        parse_time("start_time", start_time, epoch), parse_time("end_time", end_time, epoch)
    )
    if tr.start_us is not None and tr.end_us is not None and tr.end_us <= tr.start_us:
        raise bad_request("end_time", "must be after start_time")
    return tr


def _signal_list(raw: str | None, field: str = "signals") -> list[str]:
    names = [s.strip() for s in (raw or "").split(",") if s.strip()]
    if not names:
        raise bad_request(field, "give at least one signal name, comma separated")
    if len(names) > 100:
        raise bad_request(field, "at most 100 signals per request")
    return list(dict.fromkeys(names))


def _fields(raw: str | None) -> list[str]:
    if raw is None:
        return list(AGG_FIELDS)
    names = [f.strip() for f in raw.split(",") if f.strip()]
    unknown = [f for f in names if f not in AGG_FIELDS]
    if unknown or not names:
        raise bad_request(
            "fields", f"unknown field(s) {unknown}; choose from {', '.join(AGG_FIELDS)}"
        )
    return names


#: the old name, still imported by routers elsewhere (``millrace.api.pagination``)
_pagination = page_meta


Rendered = tuple[orjson.Fragment, int]


# The query and its JSON run on the worker thread: the loop only sends the bytes.
def _raw(store: ProjectionStore, identity: str, names: list[str], w: Window) -> dict[str, Rendered]:
    table = queries.raw_readings_table(store, identity, names, w.range, w.limit, w.offset, w.order)
    return signal_json.points_by_signal(table, names, w.epoch)


def _aggregates(
    store: ProjectionStore,
    identity: str,
    names: list[str],
    bucket: Bucket,
    fields: list[str],
    w: Window,
) -> dict[str, Rendered | tuple[list[dict[str, Any]], int]]:
    table = queries.aggregates_table(
        store, identity, names, bucket.value, w.range, w.limit, w.offset, w.order, w.time_format
    )
    if not queries.numbers_only(table):  # booleans, strings, ints: per bucket in Python
        dicts = queries.aggregate_points(table, names, fields)
        return {s: (points, len(points)) for s, points in dicts.items()}
    if len(names) == 1:
        return {names[0]: signal_json.aggregate_points(table, fields)}
    return {
        s: signal_json.aggregate_points(table.filter(pc.equal(table["signal"], s)), fields)
        for s in names
    }


def _latest(
    store: ProjectionStore,
    ids: list[str] | None,
    sigs: list[str] | None,
    key: Literal["identity", "signal"],
    reverse: bool,
    limit: int,
    offset: int,
    scope: str | None,
    epoch: Epoch | None,
) -> tuple[orjson.Fragment, int, int]:
    table, total = queries.latest_table(store, ids, sigs, key, reverse, limit, offset, scope)
    data, count = signal_json.latest(table, epoch)
    return data, count, total


def _time_format(epoch: Epoch | None) -> Literal["iso", "s", "ms", "us"]:
    return "iso" if epoch is None else epoch.value


async def _run(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


@dataclass(frozen=True)
class Window:
    """The time range, time format and page of a query."""

    range: TimeRange
    epoch: Epoch | None
    limit: int
    page: int
    order: Literal["asc", "desc"]

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    @property
    def time_format(self) -> Literal["iso", "s", "ms", "us"]:
        return _time_format(self.epoch)

    def pagination(self, rows: int, total: int | None = None) -> dict[str, Any]:
        return page_meta(self.page, self.limit, rows, total)


def window(
    start_time: StartTime = None,
    end_time: EndTime = None,
    epoch: EpochQ = None,
    limit: Limit = 1000,
    page: Page = 1,
    order: Annotated[Order, Query(description="by time; newest first by default")] = Order.desc,
) -> Window:
    """Dependency: the shared time and paging parameters of the signal queries."""
    return Window(_time_range(start_time, end_time, epoch), epoch, limit, page, order.value)


FieldsQ = Annotated[
    str | None, Query(description="comma-separated: count,min,max,sum,avg,first,last")
]
SignalsQ = Annotated[str | None, Query(description="comma-separated signal names")]


# registered before /signals/{signal} so that 'aggregates' is not taken for a signal
@router.get(
    "/identities/{identity}/signals/aggregates",
    summary="Aggregates of several signals",
    response_model=models.SignalPage[models.SignalsAggregates],
)
async def signals_aggregates(
    identity: IdentityPath,
    signals: SignalsQ = None,
    bucket: Bucket = Bucket.h1,
    fields: FieldsQ = None,
    w: Window = Depends(window),
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    """Aggregates for each signal; ``limit`` buckets per signal."""
    names = _signal_list(signals)
    data = await _run(_aggregates, ctx.store, identity, names, bucket, _fields(fields), w)
    most = max((n for _, n in data.values()), default=0)
    return JsonResponse(
        {
            "data": {
                "identity": identity,
                "bucket": bucket.value,
                "signals": {s: points for s, (points, _) in data.items()},
            },
            "meta": {"pagination": w.pagination(most)},
        }
    )


@router.get(
    "/identities/{identity}/signals/{signal}",
    summary="Raw readings of one signal",
    response_model=models.SignalPage[models.SignalPoints],
)
async def raw_signal(
    identity: IdentityPath,
    signal: str,
    w: Window = Depends(window),
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    """Readings in ``[start_time, end_time)``, newest first unless ``order=asc``."""
    data = await _run(_raw, ctx.store, identity, [signal], w)
    points, count = data[signal]
    return JsonResponse(
        {
            "data": {"identity": identity, "signal": signal, "points": points},
            "meta": {"pagination": w.pagination(count)},
        }
    )


@router.get(
    "/identities/{identity}/signals",
    summary="Raw readings of several signals",
    response_model=models.SignalPage[models.SignalsPoints],
)
async def raw_signals(
    identity: IdentityPath,
    signals: SignalsQ = None,
    w: Window = Depends(window),
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    """Like the single-signal query, ``limit`` readings per signal."""
    names = _signal_list(signals)
    data = await _run(_raw, ctx.store, identity, names, w)
    most = max((n for _, n in data.values()), default=0)
    return JsonResponse(
        {
            "data": {"identity": identity, "signals": {s: data[s][0] for s in names}},
            "meta": {"pagination": w.pagination(most)},
        }
    )


@router.get(
    "/identities/{identity}/signals/{signal}/aggregates",
    summary="Aggregates of one signal",
    response_model=models.SignalPage[models.SignalAggregates],
)
async def signal_aggregates(
    identity: IdentityPath,
    signal: str,
    bucket: Bucket = Bucket.h1,
    fields: FieldsQ = None,
    w: Window = Depends(window),
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    """Buckets whose start lies in ``[start_time, end_time)``. Booleans and strings
    have count/first/last; min/max/sum/avg are null for them. Bad-quality readings are
    not aggregated."""
    data = await _run(_aggregates, ctx.store, identity, [signal], bucket, _fields(fields), w)
    points, count = data[signal]
    return JsonResponse(
        {
            "data": {
                "identity": identity,
                "signal": signal,
                "bucket": bucket.value,
                "points": points,
            },
            "meta": {"pagination": w.pagination(count)},
        }
    )


@router.get(
    "/signals/latest",
    summary="Latest value per identity and signal",
    response_model=models.CountedPage[models.LatestValue],
)
async def latest_values(
    identities: Annotated[str | None, Query(description="comma-separated identities")] = None,
    signals: Annotated[str | None, Query(description="comma-separated signal names")] = None,
    sort_key: SortKey = SortKey.identity,
    reverse: bool = False,
    epoch: EpochQ = None,
    limit: Limit = 1000,
    page: Page = 1,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    """The newest reading of each (identity, signal), filtered and sorted; ``total``
    counts every match. A scoped caller sees the identities of its scope only."""
    ids = [s.strip() for s in identities.split(",") if s.strip()] if identities else None
    sigs = [s.strip() for s in signals.split(",") if s.strip()] if signals else None
    key: Literal["identity", "signal"] = "identity" if sort_key is SortKey.identity else "signal"
    data, count, total = await _run(
        _latest,
        ctx.store,
        ids,
        sigs,
        key,
        reverse,
        limit,
        (page - 1) * limit,
        within(principal),
        epoch,
    )
    return JsonResponse(
        {
            "data": data,
            "total": total,
            "meta": {"pagination": page_meta(page, limit, count, total)},
        }
    )
