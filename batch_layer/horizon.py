"""The horizon H of a batch run: chosen and checked in one place.

A run covers every landed record with ingest bucket < H, so H must be:
- on a bucket boundary (a bucket is absorbed whole, never split between batch and speed);
- at most the landing watermark (every bucket below it is sealed: no record can still land);
- at least the published horizon, so answers never lose events — except for a rebuild, which
  may go back as far as the speed rows kept for rollback reach (``safe_expiry_horizon``).

``choose_horizon`` is used by ``lambda-batch run``, both DAGs and ``run_once``; ``publish``
re-checks the part that can change meanwhile (the published horizon) as the last guard.
"""

from __future__ import annotations

from batch_layer.catalog import safe_expiry_horizon
from lambda_contracts.layout import Layout
from lambda_contracts.retention import speed_floor
from lambda_contracts.settings import Settings


class HorizonError(ValueError):
    """A horizon a batch run may not use."""


def check_horizon(
    horizon_ms: int,
    *,
    bucket_ms: int,
    watermark_ms: int | None,
    current_ms: int,
    rebuild: bool = False,
    floor_ms: int = 0,
) -> None:
    """Raise HorizonError unless ``horizon_ms`` is a valid horizon (see the module docstring).

    ``watermark_ms`` None skips the watermark check (publish: it was checked at the choice and
    the watermark only grows); ``floor_ms`` is how far back a rebuild may go.
    """
    if horizon_ms < 0 or horizon_ms % bucket_ms:
        raise HorizonError(f"horizon {horizon_ms} is not on a {bucket_ms} ms bucket boundary")
    if watermark_ms is not None and horizon_ms > watermark_ms:
        raise HorizonError(
            f"horizon {horizon_ms} is past the landing watermark {watermark_ms}: "
            "buckets above it are not sealed"
        )
    if not rebuild and horizon_ms < current_ms:
        raise HorizonError(
            f"horizon {horizon_ms} is older than the published {current_ms}; "
            "rebuild or roll back to go back on purpose"
        )
    if rebuild and horizon_ms < floor_ms:
        raise HorizonError(
            f"horizon {horizon_ms} is older than the speed rows kept for rollback ({floor_ms})"
        )


def rebuild_floor(settings: Settings) -> int:
    """How far back a rebuild may go: the speed rows kept for rollback reach that far, and
    none below the recorded expiry floor is left."""

    layout = Layout.of(settings)
    return max(safe_expiry_horizon(layout, settings.batch_keep_versions), speed_floor(layout))


def choose_horizon(
    settings: Settings, requested_ms: int | None = None, rebuild: bool = False
) -> int | None:
    """The horizon of the next run, checked; None when there is nothing new to absorb.

    Without ``requested_ms`` it is the landing watermark, if that passed the published
    horizon (a rebuild takes the watermark even if it did not). A requested horizon is
    checked and returned as is (raises HorizonError).
    """
    layout = Layout.of(settings)
    watermark = layout.landing_watermark(settings.partitions, settings.bucket_ms)
    current = layout.read_current()
    current_ms = current.horizon_ms if current else 0
    if requested_ms is None:
        if watermark <= current_ms and not (rebuild and watermark == current_ms):
            return None
        requested_ms = watermark
    check_horizon(
        requested_ms,
        bucket_ms=settings.bucket_ms,
        watermark_ms=watermark,
        current_ms=current_ms,
        rebuild=rebuild,
        floor_ms=rebuild_floor(settings) if rebuild else 0,
    )
    return requested_ms
