"""Global answers: totals, their time series (``async def`` as in :mod:`serving.routes.accounts`),
and the top accounts."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query

from lambda_contracts.buckets import ms_to_iso
from lambda_contracts.views import GLOBAL_MINUTE
from serving.deps import QueriesDep, RangeDep, SeriesRangeDep
from serving.routes.common import JSONAnswer, measures_fields, meta, point, rendered
from serving.schemas import INVALID_INPUT, MergeSeries, Series, TopAccounts, Totals, money

router = APIRouter(prefix="/v1", tags=["totals"])


class RankBy(StrEnum):
    sum = "sum"
    count = "count"


@router.get("/totals", response_model=Totals, openapi_extra=INVALID_INPUT)
async def totals(span: RangeDep, queries: QueriesDep) -> JSONAnswer:
    """Number and total amount of all payments with CreatedTime in [start, end)."""
    await queries.prepare()
    snap, value = queries.consistent(lambda s: queries.summary(s, span.start_ms, span.end_ms))
    fields = measures_fields(value)
    return JSONAnswer(
        {
            "count": fields["count"],
            "sum": fields["sum"],
            "meta": meta(snap, await queries.recent_watermark.get()),
        }
    )


@router.get("/totals/series", response_model=Series, openapi_extra=INVALID_INPUT)
async def totals_series(spec: SeriesRangeDep, queries: QueriesDep) -> JSONAnswer:
    """All payments per minute, hour or day (UTC)."""
    span, granularity = spec
    await queries.prepare()
    snap, points = queries.consistent(
        lambda s: queries.series(s, span.start_ms, span.end_ms, granularity)
    )
    return JSONAnswer(
        {
            "account_id": None,
            "granularity": granularity.value,
            "points": [point(w, v) for w, v in points],
            "meta": meta(snap, await queries.recent_watermark.get()),
        }
    )


@router.get("/totals/merge", response_model=MergeSeries, openapi_extra=INVALID_INPUT)
async def totals_merge(spec: SeriesRangeDep, queries: QueriesDep) -> JSONAnswer:
    """All payments per minute, hour or day (UTC), each window split into the part the batch
    view and the part the speed view contributed, read from one snapshot."""
    span, granularity = spec
    await queries.prepare()
    snap, windows = queries.consistent(
        lambda s: queries.series_by_side(s, span.start_ms, span.end_ms, granularity)
    )
    return JSONAnswer(
        {
            "granularity": granularity.value,
            "points": [
                {
                    "window_start": ms_to_iso(window) or "",
                    "window_start_ms": window,
                    **side_part(merged),
                    "batch": side_part(batch),
                    "speed": side_part(speed),
                }
                for window, merged, batch, speed in windows
            ],
            "meta": meta(snap, await queries.recent_watermark.get()),
        }
    )


def side_part(value: dict[str, int] | None) -> dict[str, object]:
    """A window's count and sum (money) from one side, zero when the side has none."""
    fields = rendered(GLOBAL_MINUTE, value)
    return {"count": fields["count"], "sum": fields["sum"]}


@router.get("/top-accounts", response_model=TopAccounts, openapi_extra=INVALID_INPUT)
def top_accounts(
    span: RangeDep,
    queries: QueriesDep,
    by: Annotated[RankBy, Query(description="rank by total amount or by count")] = RankBy.sum,
    limit: Annotated[int, Query(ge=1, le=1000, description="how many accounts")] = 10,
) -> JSONAnswer:
    """Accounts with the largest total amount (or count) in [start, end); ties by account id."""
    # A plain ``def`` (thread pool): ranking every account is not sub-millisecond work.
    snap, ranked = queries.consistent(
        lambda s: queries.top_accounts(s, span.start_ms, span.end_ms, by is RankBy.sum, limit)
    )
    return JSONAnswer(
        {
            "by": by.value,
            "accounts": [
                {"account_id": a, "count": v["count"], "sum": money(v["sum"])} for a, v in ranked
            ],
            "meta": meta(snap, queries.speed_watermark_ms()),
        }
    )
