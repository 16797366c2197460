"""Turning merged measures and a snapshot into answers.

The answers are built as plain dicts of str/int/None in the shapes of :mod:`serving.schemas`
and serialised by orjson (:class:`JSONAnswer`): validating what this code just built through
pydantic again cost more than the cached query behind it.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

from lambda_contracts.buckets import ms_to_iso
from serving.queries import Snapshot
from serving.schemas import average, money


class JSONAnswer(Response):
    """A JSON response rendered by orjson, without re-validation against a response model."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def meta(snap: Snapshot, speed_watermark_ms: int | None) -> dict:
    """The answer's freshness (the speed watermark as computed by the caller)."""
    pointer = snap.pointer
    return {
        "batch_version": pointer.version if pointer else None,
        "batch_horizon": ms_to_iso(pointer.horizon_ms) if pointer else None,
        "batch_horizon_ms": pointer.horizon_ms if pointer else None,
        "speed_watermark": ms_to_iso(speed_watermark_ms),
        "speed_watermark_ms": speed_watermark_ms,
        "as_of": ms_to_iso(snap.as_of_ms) or "",
        "events_from_batch": snap.batch_events,
        "events_from_speed": snap.speed_events,
    }


def measures_fields(value: dict[str, int] | None) -> dict[str, Any]:
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


def point(window_start: int, value: dict[str, int]) -> dict[str, Any]:
    return {
        "window_start": ms_to_iso(window_start) or "",
        "window_start_ms": window_start,
        "count": value["count"],
        "sum": money(value["sum"]),
        "min": money(value["min"]),
        "max": money(value["max"]),
    }
