"""Operations: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from serving.deps import QueriesDep
from serving.schemas import VERSION_EXAMPLE, Readiness

router = APIRouter(tags=["operations"])

NOT_READY = {
    "ready": False,
    "checks": {"speed_store": "error: OperationalError", "batch_views": f"ok ({VERSION_EXAMPLE})"},
}


@router.get(
    "/healthz", responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}}
)
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "Not ready: a check failed (named in `checks`)",
            "content": {"application/json": {"example": NOT_READY}},
        }
    },
)
def readyz(queries: QueriesDep) -> JSONResponse:
    """Ready when the speed store answers and a batch version answers (CURRENT, or the one
    before it while CURRENT loads), if one was published."""
    checks: dict[str, str] = {}
    try:
        queries.speed.ping()
        checks["speed_store"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is reported
        checks["speed_store"] = f"error: {exc.__class__.__name__}"
    try:
        pointer = queries.switch.pointer()
        checks["batch_views"] = f"ok ({pointer.version})" if pointer else "ok (none published yet)"
    except Exception as exc:
        checks["batch_views"] = f"error: {exc.__class__.__name__}"
    ready = all(v.startswith("ok") for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    request.app.state.metrics.refresh_staleness(request.app.state.queries)
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
