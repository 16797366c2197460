"""Build the FastAPI app (``create_app``) and run it (``lambda-serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import structlog
import typer
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings, get_settings
from lambda_contracts.startup import (
    checked_kafka_access,
    checked_layout,
    checked_settings,
    checked_views,
)
from lambda_contracts.view_set import ViewSet, registered_versions, with_previous
from lambda_contracts.views import VIEWS
from serving.batch_cache import BatchCache
from serving.batch_runs import BatchRuns
from serving.batch_store import BatchStore
from serving.consumer_group import ConsumerGroup
from serving.dead_letters import DeadLetterTail
from serving.deps import MAX_POINTS, require_token
from serving.history import History, take_sample
from serving.kafka_lag import EndOffsets
from serving.metrics import MULTIPROC_ENV, ServingMetrics
from serving.queries import QueryService
from serving.routes import accounts, batch, docs, freshness, ops, speed, totals
from serving.routes.views import views_router
from serving.schemas import UNAUTHORIZED
from serving.served_views import ServedView
from serving.snapshot_cache import Refreshed
from serving.speed_store import SpeedReader

STATIC = Path(__file__).with_name("static")
# How long a uvicorn worker may take to answer its supervisor's ping (see serve()).
WORKER_HEALTHCHECK_S = 60
log = structlog.get_logger("serving.access")


class AccessLog:
    """Latency per route into the metrics and one log line per request.

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` runs every request through
    an extra task and a response stream, which cost more than a cached answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app starts a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            scope["app"].state.metrics.latency.labels(route, str(status)).observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                ms=round(elapsed * 1000, 2),
            )


def freeze_startup_heap() -> None:
    """Move what start-up allocated (modules, the app, the first version) out of the cyclic
    garbage collector's reach. A full collection scans every tracked object with the GIL
    held: ~150k of them in a worker, 50-90 ms in which no request moves, and the allocations
    of a version switch trigger one (bench/serving_switch_stall.py). Frozen objects are still
    freed by reference counting; only cycles among them would stay."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, views: ViewSet | None = None) -> FastAPI:
    """The app over ``settings``' stores, serving the built-in views and those of ``views``
    (by default the views file's)."""
    settings = settings or get_settings()
    assert settings.speed_store_url is not None
    views = views if views is not None else ViewSet.load(settings.views_file)
    registry = make_engine(settings.speed_store_url)
    try:  # the previous versions of changed views, answering until their successors serve
        views = with_previous(views, registered_versions(registry))
    finally:
        registry.dispose()
    previous = {d.name: d for d in views.previous}
    served = [ServedView.of_view(v) for v in VIEWS] + [
        ServedView.of_declared(d, previous.get(d.name)) for d in views.declared
    ]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.speed_store_url)
        metrics = ServingMetrics()
        app.state.settings = settings
        app.state.metrics = metrics
        app.state.end_offsets = EndOffsets(settings)
        app.state.layout = layout = Layout.of(settings)
        app.state.queries = queries = QueryService(
            BatchStore(layout, views),
            SpeedReader(engine, settings.topic, views),
            observe=lambda side, n: metrics.events.labels(side).inc(n),
            end_offsets=lambda: app.state.end_offsets.get(),
            partitions=settings.partitions,
            cache=BatchCache(settings.api_batch_cache_rows),
            observe_switch=metrics.observe_switch,
        )
        app.state.batch_runs = BatchRuns(queries.speed, layout, settings.airflow_ui_url)
        # The dashboard's group and rejects panels: readings of the broker, taken in a
        # worker thread while requests get the last one.
        app.state.group = group = ConsumerGroup(settings)
        app.state.group_reading = Refreshed(group.describe, max_age_s=1.0)
        app.state.dead_letters = dead_letters = DeadLetterTail(settings)
        app.state.rejects_reading = Refreshed(dead_letters.read, max_age_s=2.0)
        app.state.history = history = History(
            lambda: take_sample(settings, queries, layout), settings.api_history_sample_s
        )
        sampler = asyncio.create_task(history.run()) if settings.api_history_sample_s else None
        try:  # load CURRENT's version before taking requests (each worker has its own copy)
            await queries.prepare()
        except Exception as exc:  # not fatal: /readyz reports it, requests retry the load
            log.warning("batch version not loaded at start-up", error=repr(exc))
        freeze_startup_heap()
        yield
        gc.unfreeze()  # a process that hosts another app next (tests) collects this one
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        app.state.end_offsets.close()
        app.state.group.close()
        app.state.dead_letters.close()
        engine.dispose()

    app = FastAPI(
        title="Lambda platform serving API",
        version="1.0",
        description="Exact, fresh answers over payment events: batch views merged with speed "
        "views. Ranges are on event time (CreatedTime): `start` inclusive, `end` exclusive, "
        "resolved to whole minutes (a minute counts if it starts in the range). Amounts are "
        "decimal strings with 2 places.\n\n"
        "**Limits** (a request past one gets 422 with the reason, never a partial answer): "
        "times from epoch 0 to the year 9999; a series or a view's rows at most "
        f"{MAX_POINTS:,} windows of the chosen granularity; `/v1/top-accounts` at most "
        "1,000 accounts, ranked in the batch store (only the accounts that can still rank "
        "first leave it), so its cost follows the rows of the range, not the accounts; a "
        f"declared view's `limit` at most {MAX_POINTS:,} rows; batch runs at most 100; account "
        "and dimension values at most their event field's length.",
        lifespan=lifespan,
        # Served by serving.routes.docs instead, from vendored assets rather than a CDN.
        docs_url=None,
        redoc_url=None,
    )
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization"],
        )

    app.add_middleware(AccessLog)

    # Without a token there is nothing to check: no dependency to solve on every request.
    secured = [Depends(require_token)] if settings.api_token is not None else []
    routers = (accounts.router, totals.router, freshness.router, batch.router, speed.router)
    for router in (*routers, views_router(served)):
        app.include_router(router, dependencies=secured, responses=UNAUTHORIZED if secured else {})
    app.include_router(ops.router)
    app.include_router(docs.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


cli = typer.Typer(add_completion=False)


def configure_logging() -> None:
    """JSON lines on stdout, rendered by orjson straight to bytes: one line per request is
    written at hundreds of requests per second, so the logger is part of the hot path."""
    structlog.configure(
        processors=[
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.add_log_level,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(),
        cache_logger_on_first_use=True,
    )


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process (a factory: each worker builds its own)."""
    configure_logging()
    settings = checked_settings()
    return create_app(settings, checked_views(settings))


@cli.command()
def serve() -> None:
    """Serve the API on LAMBDA_API_HOST:LAMBDA_API_PORT (127.0.0.1:8000 by default) with
    LAMBDA_API_WORKERS worker processes sharing the socket."""
    configure_logging()
    settings = checked_settings()
    checked_layout(settings)  # a bad storage setting exits 78 here, before the workers start
    checked_views(settings)  # so does an invalid views file
    checked_kafka_access(settings)  # and Kafka credentials the brokers refuse (lag, group, DLQ)
    metrics_dir = None
    if settings.api_workers > 1:  # the workers (spawned: they import anew) inherit it
        metrics_dir = Path(tempfile.mkdtemp(prefix="serving-metrics-", dir=_run_dir(settings)))
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
    try:
        uvicorn.run(
            "serving.main:app_from_env",
            factory=True,
            host=settings.api_host,
            port=settings.api_port,
            workers=settings.api_workers,
            # uvicorn kills a worker that does not answer its supervisor's ping in time (5 s by
            # default). A spawned worker answers only once it has imported the app, which
            # takes longer than that on a busy host (a Spark run beside it): every worker was
            # killed before it started, over and over, and the API never came up.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_dir(settings: Settings) -> Path:
    run = settings.data_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    return run


if __name__ == "__main__":
    cli()
