"""What an incremental batch run builds on: the published version, if a run may add to it.

A version at horizon H holds every view over the landing zone below H (partitioned by
event-time hour or day, see ``lambda_contracts.layout``), and a dedup index: for every
TransactionID whose last kept copy is within the dedup horizon D of H, that copy's Kafka time
(append-only files, one per run, each named by the versions that still need it and dropped once
all it holds is older than D). The next run, at H' > H, then needs only the buckets in [H, H'):
their copies are judged against the index (any earlier kept copy that could make one a
duplicate is in it, since every copy in [H, H') is at or after H), and only the periods their
events fall in are rewritten (old rows plus the increment's, merged measure by measure). The
other periods' files are named again by the new version's manifest, not copied.

A full recompute (``lambda_rebuild``, or no usable base) reads everything below H' and is the
audit of the incremental path: both produce the same views, row for row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lambda_contracts.layout import Layout
from lambda_contracts.manifest import BATCH_FORMAT, COUNTERS, Counters, Manifest
from lambda_contracts.settings import Settings
from lambda_contracts.views import VIEWS, View


@dataclass(frozen=True)
class Base:
    """A published version an incremental run adds to."""

    version: str
    manifest: Manifest

    @property
    def horizon_ms(self) -> int:
        return self.manifest.horizon_ms

    def partitions(self, view_name: str) -> dict[int, list[str]]:
        """{period start (ms): keys of the view's files for that event-time period}."""
        named = self.manifest.output_partitions.get(view_name, {})
        return {int(start): list(keys) for start, keys in named.items()}

    @property
    def dedup_index_files(self) -> dict[str, int]:
        """{key: horizon of the run that wrote it}: the index is append-only, each run adds
        a file of the ids it kept, and files expire by that horizon."""
        return dict(self.manifest.dedup_index_files)


def incremental_base(
    layout: Layout, settings: Settings, horizon_ms: int, views: Sequence[View] = VIEWS
) -> tuple[Base | None, str]:
    """The version a run of ``views`` at ``horizon_ms`` adds to (CURRENT), or None and why a
    full recompute is needed instead (among others: a view the version does not hold, such as
    a newly declared one, needs every event below the horizon, not an increment)."""
    current = layout.read_current()
    if current is None:
        return None, "nothing published yet"
    manifest = layout.read_manifest(current.version)
    if manifest is None:
        return None, f"CURRENT names {current.version}, which has no manifest"
    if (found := manifest.format) != BATCH_FORMAT:
        return None, f"{current.version} has manifest format {found}, not {BATCH_FORMAT}"
    if not manifest.validated:
        return None, f"{current.version} is not validated"
    if manifest.bucket_ms != settings.bucket_ms:
        return None, "LAMBDA_BUCKET_MS changed since the published version"
    if manifest.dedup_horizon_ms != settings.dedup_horizon_ms:
        return None, "LAMBDA_DEDUP_HORIZON_MS changed since the published version"
    if manifest.horizon_ms > horizon_ms:
        return None, f"horizon {horizon_ms} is older than the published {manifest.horizon_ms}"
    missing = [v.name for v in views if v.name not in manifest.output_partitions]
    if missing:
        return None, f"{current.version} lacks view {missing[0]} (a new view version: built whole)"
    return Base(current.version, manifest), f"adds [{manifest.horizon_ms}, {horizon_ms})"


def cumulative(base: Base | None, increment: Counters) -> dict[str, int]:
    """The version's counters: the base's plus the increment's (validation reconciles them
    with every view's total, so a day lost or counted twice fails it)."""
    return {
        name: (getattr(base.manifest, name) if base else 0) + getattr(increment, name)
        for name in COUNTERS
    }
