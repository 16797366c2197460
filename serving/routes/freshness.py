"""How fresh answers are: batch version and horizon, landing watermark, speed lag, last run."""

from __future__ import annotations

from fastapi import APIRouter

from lambda_contracts.buckets import ms_to_iso
from serving.deps import LayoutDep, QueriesDep, SettingsDep
from serving.routes.common import meta
from serving.schemas import Freshness, PartitionLag

router = APIRouter(prefix="/v1", tags=["freshness"])


@router.get("/freshness", response_model=Freshness)
def freshness(settings: SettingsDep, queries: QueriesDep, layout: LayoutDep) -> Freshness:
    snap = queries.snapshot()
    watermark = layout.landing_watermark(settings.partitions, settings.bucket_ms)
    reading = queries.end_offsets()
    ends = reading.offsets if reading else None
    speed_watermark = queries.speed_watermark_ms(reading)
    stored = {p["kafka_partition"]: p["next_offset"] for p in queries.speed.partitions()}
    lag = []
    for partition in range(settings.partitions):
        offset = stored.get(partition, 0)
        end = ends.get(partition) if ends else None
        lag.append(
            PartitionLag(
                partition=partition,
                stored_offset=offset,
                end_offset=end,
                lag=None if end is None else max(end - offset, 0),
            )
        )
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
