"""The batch layer's recent publishes (the dashboard's batch-runs panel)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from serving.batch_runs import BatchRuns
from serving.deps import QueriesDep
from serving.routes.common import JSONAnswer
from serving.schemas import INVALID_INPUT
from serving.schemas import BatchRuns as BatchRunsAnswer

router = APIRouter(prefix="/v1/batch", tags=["batch"])


async def get_batch_runs(request: Request) -> BatchRuns:
    return request.app.state.batch_runs


@router.get("/runs", response_model=BatchRunsAnswer, openapi_extra=INVALID_INPUT)
def batch_runs(
    queries: QueriesDep,
    runs: Annotated[BatchRuns, Depends(get_batch_runs)],
    limit: Annotated[int, Query(ge=1, le=100, description="how many runs")] = 10,
) -> JSONAnswer:
    """The latest published batch runs, newest first: horizon, increment, events, drift,
    duration, and a link to the run in the Airflow UI."""
    # A plain ``def`` (thread pool): a manifest not read yet is a read from the store.
    pointer = queries.switch.current.read()  # as published, as /v1/freshness says
    current = pointer.version if pointer else None
    return JSONAnswer(
        {
            "current_version": current,
            "pinned": pointer.pinned if pointer else False,
            "runs": runs.recent(limit, current),
        }
    )
