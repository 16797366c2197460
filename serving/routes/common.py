"""Turning merged measures and a snapshot into response fields."""

from __future__ import annotations

from lambda_contracts.buckets import ms_to_iso
from serving.queries import QueryService, Snapshot
from serving.schemas import Meta, Point, average, money


def meta(snap: Snapshot, queries: QueryService, speed_watermark_ms: int | None = None) -> Meta:
    """The answer's freshness; ``speed_watermark_ms`` if the caller computed it already."""
    pointer = snap.pointer
    watermark = (
        speed_watermark_ms if speed_watermark_ms is not None else queries.speed_watermark_ms()
    )
    return Meta(
        batch_version=pointer.version if pointer else None,
        batch_horizon=ms_to_iso(pointer.horizon_ms) if pointer else None,
        batch_horizon_ms=pointer.horizon_ms if pointer else None,
        speed_watermark=ms_to_iso(watermark),
        speed_watermark_ms=watermark,
        as_of=ms_to_iso(snap.as_of_ms) or "",
        events_from_batch=snap.batch_events,
        events_from_speed=snap.speed_events,
    )


def measures_fields(value: dict[str, int] | None) -> dict:
    """count, sum, min, max (cents → money) and the derived avg; zeros when empty."""
    if value is None:
        return {"count": 0, "sum": money(0), "min": None, "max": None, "avg": None}
    return {
        "count": value["count"],
        "sum": money(value["sum"]),
        "min": money(value["min"]),
        "max": money(value["max"]),
        "avg": average(value["sum"], value["count"]),
    }


def point(window_start: int, value: dict[str, int]) -> Point:
    fields = measures_fields(value)
    fields.pop("avg")
    return Point(window_start=ms_to_iso(window_start) or "", window_start_ms=window_start, **fields)
