"""How fresh answers are: batch version and horizon, landing watermark, speed lag, last run."""

from __future__ import annotations

import time
from dataclasses import asdict

from fastapi import APIRouter, Request

from lambda_contracts.buckets import ms_to_iso
from serving.deps import LayoutDep, QueriesDep, SettingsDep
from serving.history import HOUR_S, History
from serving.kafka_lag import partition_progress
from serving.routes.common import JSONAnswer, meta
from serving.schemas import Freshness, FreshnessHistory, PartitionLag

router = APIRouter(prefix="/v1", tags=["freshness"])

# The most publishes an hour can hold: one a minute (the schedule is 5 minutes by default).
PUBLISHES_PER_HOUR = 60


@router.get("/freshness", response_model=Freshness)
def freshness(settings: SettingsDep, queries: QueriesDep, layout: LayoutDep) -> Freshness:
    snap = queries.snapshot()
    watermark = layout.landing_watermark(settings.partitions, settings.bucket_ms)
    reading = queries.end_offsets()
    speed_watermark = queries.speed_watermark_ms(reading)
    stored = {p["kafka_partition"]: p["next_offset"] for p in queries.speed.partitions()}
    lag = [
        PartitionLag(**asdict(p)) for p in partition_progress(settings.partitions, stored, reading)
    ]
    last = queries.speed.last_run()
    pointer = queries.switch.current.read()  # as published (meta: what answers read now)
    return Freshness(
        batch_version=pointer.version if pointer else None,
        batch_pinned=pointer.pinned if pointer else False,
        batch_horizon=ms_to_iso(pointer.horizon_ms) if pointer else None,
        batch_horizon_ms=pointer.horizon_ms if pointer else None,
        landing_watermark=ms_to_iso(watermark) if watermark else None,
        landing_watermark_ms=watermark,
        speed_watermark=ms_to_iso(speed_watermark),
        speed_watermark_ms=speed_watermark,
        speed_lag=lag,
        last_batch_run={k: v for k, v in last.items() if k != "report"} if last else None,
        meta=meta(snap, speed_watermark),
    )


@router.get("/freshness/history", response_model=FreshnessHistory)
def freshness_history(request: Request, queries: QueriesDep) -> JSONAnswer:
    """The last hour of the speed watermark, landing watermark, batch horizon and lag per
    partition (the dashboard's time panel), and the publishes in that hour."""
    history: History = request.app.state.history
    since_ms = int(time.time() * 1000) - HOUR_S * 1000
    return JSONAnswer(
        {
            "sample_s": history.sample_s,
            "samples": [
                {**asdict(s), "lag": {str(p): lag for p, lag in s.lag.items()}}  # JSON keys
                for s in history.recent(since_ms)
            ],
            "publishes": [
                {k: run[k] for k in ("version", "published_at_ms", "horizon_ms")}
                for run in queries.speed.runs(PUBLISHES_PER_HOUR)
                if run["published_at_ms"] >= since_ms
            ],
        }
    )
