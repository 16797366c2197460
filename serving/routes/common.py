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
from lambda_contracts.views import GLOBAL_MINUTE, Unit, View
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


def rendered(view: View, value: dict[str, int] | None) -> dict[str, Any]:
    """Each measure under its label, cents as money; over no events, each measure's empty
    value (from the declaration)."""
    fields: dict[str, Any] = {}
    for m in view.measures:
        v = m.empty if value is None else value[m.label]
        fields[m.label] = money(v) if m.unit is Unit.CENTS else v
    return fields


def measures_fields(value: dict[str, int] | None, view: View = GLOBAL_MINUTE) -> dict[str, Any]:
    """The view's measures (cents → money) and the derived avg (sum / count)."""
    fields = rendered(view, value)
    count, amount = view.count_measure.label, view.amount_measure.label
    fields["avg"] = None if value is None else average(value[amount], value[count])
    return fields


def point(window_start: int, value: dict[str, int], view: View = GLOBAL_MINUTE) -> dict[str, Any]:
    return {
        "window_start": ms_to_iso(window_start) or "",
        "window_start_ms": window_start,
        **rendered(view, value),
    }
