"""Build the FastAPI app (``create_app``) and run it (``lambda-serve``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
import typer
import uvicorn
from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings, get_settings
from serving.batch_store import BatchStore
from serving.deps import require_token
from serving.kafka_lag import EndOffsets
from serving.metrics import ServingMetrics
from serving.queries import QueryService
from serving.routes import accounts, freshness, ops, totals
from serving.speed_store import SpeedReader

STATIC = Path(__file__).with_name("static")
log = structlog.get_logger("serving.access")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    assert settings.speed_store_url is not None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.speed_store_url)
        metrics = ServingMetrics()
        app.state.settings = settings
        app.state.metrics = metrics
        app.state.end_offsets = EndOffsets(settings)
        app.state.queries = QueryService(
            BatchStore(Layout(settings.data_dir)),
            SpeedReader(engine, settings.topic),
            observe=lambda side, n: metrics.events.labels(side).inc(n),
            end_offsets=lambda: app.state.end_offsets.get(),
            partitions=settings.partitions,
        )
        yield
        app.state.end_offsets.close()
        engine.dispose()

    app = FastAPI(
        title="Lambda platform serving API",
        version="1.0",
        description="Exact, fresh answers over payment events: batch views merged with speed "
        "views. Ranges are on event time (CreatedTime): `start` inclusive, `end` exclusive, "
        "resolved to whole minutes (a minute counts if it starts in the range). Amounts are "
        "decimal strings with 2 places.",
        lifespan=lifespan,
    )
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization"],
        )

    @app.middleware("http")
    async def access_log(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        request.app.state.metrics.latency.labels(path, str(response.status_code)).observe(elapsed)
        log.info(
            "request",
            method=request.method,
            path=request.url.path,
            route=path,
            status=response.status_code,
            ms=round(elapsed * 1000, 2),
        )
        return response

    secured = [Depends(require_token)]
    app.include_router(accounts.router, dependencies=secured)
    app.include_router(totals.router, dependencies=secured)
    app.include_router(freshness.router, dependencies=secured)
    app.include_router(ops.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


cli = typer.Typer(add_completion=False)


@cli.command()
def serve() -> None:
    """Serve the API on LAMBDA_API_HOST:LAMBDA_API_PORT (127.0.0.1:8000 by default)."""
    structlog.configure(
        processors=[
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.add_log_level,
            structlog.processors.JSONRenderer(),
        ]
    )
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    cli()
