"""Per-account answers: summary and time series over any range.

``async def``: with the batch part cached an answer takes well under a millisecond, less than
a hop to the thread pool and back would; a new batch version is loaded off the event loop
(:meth:`~serving.queries.QueryService.prepare`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from lambda_contracts.events import ID_MAX_LENGTH
from lambda_contracts.views import ACCOUNT_MINUTE
from serving.deps import QueriesDep, RangeDep, SeriesRangeDep
from serving.routes.common import JSONAnswer, measures_fields, meta, point
from serving.schemas import INVALID_INPUT, Series, Summary

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])
# The contract's limit: a longer id is no account's (a 422 says so, not an empty answer).
AccountId = Annotated[
    str, Path(min_length=1, max_length=ID_MAX_LENGTH, description="SourceAccountID")
]


@router.get("/{account_id}/summary", response_model=Summary, openapi_extra=INVALID_INPUT)
async def account_summary(account_id: AccountId, span: RangeDep, queries: QueriesDep) -> JSONAnswer:
    """count, sum, min, max, avg of an account's payments with CreatedTime in [start, end)."""
    await queries.prepare()
    snap, value = queries.consistent(
        lambda s: queries.summary(s, span.start_ms, span.end_ms, account_id)
    )
    return JSONAnswer(
        {
            "account_id": account_id,
            **measures_fields(value, ACCOUNT_MINUTE),
            "meta": meta(snap, await queries.recent_watermark.get()),
        }
    )


@router.get("/{account_id}/series", response_model=Series, openapi_extra=INVALID_INPUT)
async def account_series(
    account_id: AccountId, spec: SeriesRangeDep, queries: QueriesDep
) -> JSONAnswer:
    """One point per minute, hour or day (UTC) that has payments of the account."""
    span, granularity = spec
    await queries.prepare()
    snap, points = queries.consistent(
        lambda s: queries.series(s, span.start_ms, span.end_ms, granularity, account_id)
    )
    return JSONAnswer(
        {
            "account_id": account_id,
            "granularity": granularity.value,
            "points": [point(w, v, ACCOUNT_MINUTE) for w, v in points],
            "meta": meta(snap, await queries.recent_watermark.get()),
        }
    )
