"""Batch versions: ids, the atomic CURRENT flip, rollback and pruning of old versions.

A version exists once its manifest does: the Spark job writes the views' files first and the
manifest, which names them, last, so readers never list a version's prefix and a killed job
leaves only garbage (removed by ``prune`` once it is old). A version becomes visible to readers
only when CURRENT names it; CURRENT moves by compare-and-swap, so a reader sees the old version
or the new one, never a mix, and of two publishers only one wins.

Only validated versions are published or rolled back to: validation records its verdict in
the version's manifest (``validation``), by compare-and-swap on the manifest it checked. A
rollback pins CURRENT: batch runs are skipped and nothing is published over the operator's
choice until ``resume``. An incremental version is published only over the base it was built
on. Every move of CURRENT to another version first holds that version in ``retention`` (its
files from prune, its speed rows from expiry), and is refused if they are already gone.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from batch_layer import retention
from batch_layer.catalog import (
    VersionError,
    is_validated,
    list_versions,
    read_manifest_versioned,
    require_validated,
)
from batch_layer.horizon import check_horizon
from batch_layer.liveness import last_written_ms
from lambda_contracts.layout import BatchPointer, Layout
from lambda_contracts.manifest import Manifest, Validation

# A version without a manifest whose newest object is this old is a killed job's leftovers,
# not a job still writing (a running job rewrites a heartbeat object: ``liveness``).
GARBAGE_AFTER = timedelta(hours=6)
TOMBSTONE_NAME = "pruned.json"


class PinnedError(VersionError):
    """CURRENT is pinned by a rollback: nothing is published until ``lambda-batch resume``."""


class ConcurrentUpdateError(VersionError):
    """CURRENT moved between this caller's read and its compare-and-swap."""


class RollbackRefused(VersionError):
    """CURRENT cannot move to the version exactly (its speed rows or files are gone)."""


class StaleBaseError(VersionError):
    """An incremental version was built on a version that is no longer CURRENT."""


def new_version_id(run_id: str, now: datetime | None = None) -> str:
    """Sortable by time, unique per run, stable across retries of the same run."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)[:40]
    return f"v{stamp}-{safe}"


def version_time(version: str) -> datetime:
    """When a version's run started (its id says so)."""
    return datetime.strptime(version[1:17], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def record_validation(
    layout: Layout,
    version: str,
    ok: bool,
    detail: dict[str, Any],
    checked: tuple[Manifest, str] | None = None,
) -> None:
    """Store the verdict in the manifest ``checked`` (manifest, etag) by compare-and-swap:
    if the manifest was rewritten meanwhile (a re-run), the verdict is not stored."""
    manifest, etag = checked or read_manifest_versioned(layout, version)
    verdict = Validation(ok=ok, at_ms=int(time.time() * 1000), **detail)
    data = manifest.with_validation(verdict).dumps()
    if layout.store.cas(layout.manifest_key(version), etag, data) is None:
        raise ConcurrentUpdateError(
            f"the manifest of {version} changed while it was validated; validate it again"
        )


def publish(layout: Layout, version: str, rebuild: bool = False, floor_ms: int = 0) -> BatchPointer:
    """Make a validated ``version`` CURRENT (atomic).

    The last guard: refuses while CURRENT is pinned, and re-checks the horizon against the
    published one, which may have moved since the run chose it (``check_horizon``).
    """
    manifest = require_validated(layout, version)
    current, etag = layout.read_current_versioned()
    if current and current.version == version:
        return current  # already published: a retried task is a no-op
    if current and current.pinned:
        raise PinnedError(f"CURRENT is pinned to {current.version}; not publishing {version}")
    check_base(manifest, version, current)
    check_horizon(
        manifest.horizon_ms,
        bucket_ms=manifest.bucket_ms,
        watermark_ms=None,
        current_ms=current.horizon_ms if current else 0,
        rebuild=rebuild,
        floor_ms=floor_ms,
    )
    pointer = BatchPointer(version, manifest.horizon_ms, int(time.time() * 1000))
    move_current(layout, pointer, etag)
    return pointer


def check_base(manifest: Manifest, version: str, current: BatchPointer | None) -> None:
    """Raise StaleBaseError unless an incremental ``version`` adds to CURRENT (a full one,
    with no base, replaces anything)."""
    if manifest.mode != "incremental":
        return
    base, now = manifest.base_version, current.version if current else None
    if base != now:
        raise StaleBaseError(
            f"version {version} was built on base {base}, but CURRENT is {now}: not "
            "publishing it (the next run builds on CURRENT)"
        )


def rollback(layout: Layout, to_version: str | None = None) -> BatchPointer:
    """Point CURRENT at an earlier validated version and pin it; by default the newest one a
    rollback can reach exactly (:func:`previous_reachable`)."""
    current, etag = layout.read_current_versioned()
    if to_version is None:
        to_version = previous_reachable(layout, current)
    manifest = require_validated(layout, to_version)
    pointer = BatchPointer(to_version, manifest.horizon_ms, int(time.time() * 1000), True)
    move_current(layout, pointer, etag)
    return pointer


def previous_reachable(layout: Layout, current: BatchPointer | None) -> str:
    """The newest validated version before CURRENT that a rollback can reach exactly (its
    speed rows kept, its files not being pruned); raise VersionError naming why none can."""
    reach = retention.rollback_reach(layout)
    older = [
        v for v in reach if (current is None or v < current.version) and reach[v] != "not validated"
    ]
    reachable = [v for v in older if reach[v] is None]
    if reachable:
        return reachable[-1]
    why = "; ".join(f"{v}: {reach[v]}" for v in reversed(older)) or "there is none"
    raise RollbackRefused(
        f"refused, CURRENT is unchanged: no earlier validated version can be served exactly ({why})"
    )


def move_current(layout: Layout, pointer: BatchPointer, expected_etag: str | None) -> None:
    """Swap CURRENT to ``pointer`` with its version held meanwhile: a prune cannot delete it
    and expiry cannot pass its horizon between the checks and the swap. Raises
    RollbackRefused (CURRENT as it was) if its speed rows or files are already gone."""
    try:
        until_ms = retention.hold(layout, pointer.version, pointer.horizon_ms)
    except retention.Unreachable as exc:
        raise RollbackRefused(f"refused, CURRENT is unchanged: {exc}") from exc
    try:
        if layout.read_manifest(pointer.version) is None:
            raise RollbackRefused(
                f"refused, CURRENT is unchanged: version {pointer.version} was deleted (pruned)"
            )
        if retention.now_ms() >= until_ms:
            raise RollbackRefused(
                f"refused, CURRENT is unchanged: the hold on {pointer.version} lapsed; try again"
            )
        swap_current(layout, pointer, expected_etag)
    finally:
        retention.release(layout, pointer.version)


def resume(layout: Layout) -> BatchPointer | None:
    """Unpin CURRENT so the next run publishes again (a no-op if it is not pinned)."""
    current, etag = layout.read_current_versioned()
    if current is None or not current.pinned:
        return current
    pointer = BatchPointer(current.version, current.horizon_ms, current.published_at_ms, False)
    swap_current(layout, pointer, etag)
    return pointer


def swap_current(layout: Layout, pointer: BatchPointer, expected_etag: str | None) -> None:
    """Move CURRENT from what this caller read to ``pointer``, or raise: a publisher (or an
    operator's rollback) that moved it meanwhile wins, and this caller must decide again."""
    if not layout.swap_current(pointer, expected_etag):
        now = layout.read_current()
        raise ConcurrentUpdateError(
            f"CURRENT moved to {now.version if now else None} while this caller set it to "
            f"{pointer.version}; nothing was changed (re-run to decide against the new one)"
        )


def prune(
    layout: Layout, keep: int, now: datetime | None = None, running: str | None = None
) -> list[str]:
    """Delete all but the newest ``keep`` validated versions (never CURRENT, a held one or
    ``running``, the caller's own job), the versions that failed or never finished validation
    once older than the newest validated one (a version with no verdict only once it is
    ``GARBAGE_AFTER`` old: its job may still be validating it), and the leftovers of killed
    jobs (no manifest, nothing written for ``GARBAGE_AFTER``). The decision is recorded in
    ``retention`` before anything goes, so a rollback racing the prune refuses its victims.
    Returns the complete versions deleted."""
    cutoff = (now or datetime.now(UTC)) - GARBAGE_AFTER

    def decide(record: retention.Retention) -> list[str]:
        current = layout.read_current()  # after the record: see ``retention``
        manifests = {v: layout.read_manifest(v) for v in list_versions(layout)}
        ok = [v for v, m in manifests.items() if m is not None and is_validated(m)]
        spared = {*ok[-keep:], *record.live_holds(), running, current.version if current else None}
        newest_ok = ok[-1] if ok else None
        return [
            v
            for v, m in manifests.items()
            if m is not None
            and v not in spared
            and (v in ok or (newest_ok is not None and v < newest_ok and _leftover(v, m, cutoff)))
        ]

    doomed, until_ms = retention.mark_pruning(layout, decide)
    deleted = []
    for version in doomed:
        if retention.now_ms() >= until_ms:
            break  # the marks lapsed: a rollback may use the rest now; the next prune decides
        delete_version(layout, version)
        deleted.append(version)
    retention.done_pruning(layout, doomed, until_ms)
    cutoff_ms = int(cutoff.timestamp() * 1000)
    for version, complete in layout.version_ids().items():
        if complete:
            continue
        pruned = layout.store.exists(tombstone_key(layout, version))
        if pruned or last_written_ms(layout, version) < cutoff_ms:
            delete_version(layout, version)  # what a kept version still names stays
    return deleted


def _leftover(version: str, manifest: Manifest, cutoff: datetime) -> bool:
    """An unvalidated version no job will publish: failed, or no verdict and old."""
    if manifest.validation is not None:
        return True
    created = manifest.created_at_ms
    when = version_time(version) if created is None else datetime.fromtimestamp(created / 1000, UTC)
    return when < cutoff


def check_reusable(layout: Layout, version: str) -> None:
    """Raise VersionError if ``version`` was pruned but files under its prefix are still
    named by a kept version: a job re-running that id would delete or overwrite them."""
    if layout.read_manifest(version) is not None:
        return
    prefix = layout.version_prefix(version)
    for other in list_versions(layout):
        manifest = layout.read_manifest(other)
        if manifest and any(k.startswith(prefix) for k in manifest.named_files()):
            raise VersionError(
                f"version id {version} was pruned and {other} still shares its files: "
                "run again under a new version id"
            )


def delete_version(layout: Layout, version: str) -> None:
    """Remove a version's objects, its manifest first: from then on it no longer exists for
    any reader, and a kill midway leaves garbage that the next prune removes.

    Files another complete version's manifest names stay (an incremental version names the
    files of the days it did not rewrite, under the prefix of the version that wrote them):
    they go with the garbage of a later prune, once no kept version names them.
    """
    layout.store.delete(layout.manifest_key(version))
    prefix = layout.version_prefix(version)
    manifests = [layout.read_manifest(other) for other in list_versions(layout)]
    shared = {
        key for m in manifests if m is not None for key in m.named_files() if key.startswith(prefix)
    }
    if not shared:
        layout.store.delete_prefix(prefix)
        return
    tombstone = tombstone_key(layout, version)
    layout.store.put(tombstone, b"{}")  # not a job still writing: prune may finish it any time
    for info in layout.store.list(prefix):
        if info.key not in shared and info.key != tombstone and not _checksum_of(info.key, shared):
            layout.store.delete(info.key)


def tombstone_key(layout: Layout, version: str) -> str:
    """Marks the prefix of a pruned version whose files a kept version still names."""
    return f"{layout.version_prefix(version)}{TOMBSTONE_NAME}"


def _checksum_of(key: str, files: set[str]) -> bool:
    """Hadoop's ``.<name>.crc`` beside a file in ``files`` (local file system only)."""
    folder, _, name = key.rpartition("/")
    return name.startswith(".") and name.endswith(".crc") and f"{folder}/{name[1:-4]}" in files
