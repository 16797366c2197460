"""Per-account answers: summary and time series over any range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from serving.deps import QueriesDep, RangeDep, SeriesRangeDep
from serving.routes.common import measures_fields, meta, point
from serving.schemas import Series, Summary

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])
AccountId = Annotated[str, Path(min_length=1, max_length=255, description="SourceAccountID")]


@router.get("/{account_id}/summary", response_model=Summary)
def account_summary(account_id: AccountId, span: RangeDep, queries: QueriesDep) -> Summary:
    """count, sum, min, max, avg of an account's payments with CreatedTime in [start, end)."""
    snap, value = queries.consistent(
        lambda s: queries.summary(s, span.start_ms, span.end_ms, account_id)
    )
    return Summary(account_id=account_id, **measures_fields(value), meta=meta(snap, queries))


@router.get("/{account_id}/series", response_model=Series)
def account_series(account_id: AccountId, spec: SeriesRangeDep, queries: QueriesDep) -> Series:
    """One point per minute, hour or day (UTC) that has payments of the account."""
    span, granularity = spec
    snap, points = queries.consistent(
        lambda s: queries.series(s, span.start_ms, span.end_ms, granularity, account_id)
    )
    return Series(
        account_id=account_id,
        granularity=granularity.value,
        points=[point(w, v) for w, v in points],
        meta=meta(snap, queries),
    )
