"""What may still be rolled back to: the speed store's expiry floor, rollback holds, prunes.

A rollback to version V (horizon H) is exact only while every speed row with ingest bucket >= H
still exists, and only while V's files do. Three writers race over that, so they meet in one
small object, ``batch/RETENTION`` (its format: :mod:`lambda_contracts.retention`), moved only
by compare-and-swap:

- ``speed_expired_below_ms``: expiry raises it BEFORE deleting speed rows below it (a crash
  leaves it above what is gone: conservative), so it is the durable floor of the speed rows.
- ``holds``: {version: (horizon, until)} of a move of CURRENT to another version (a rollback,
  a publish) between its checks and its swap; expiry never goes above a hold, prune never
  deletes a held version. Once CURRENT names the version, CURRENT protects it and the hold goes.
  A hold lapses at ``until`` (``HOLD_MS`` on): a mover that died leaves no lasting block on
  expiry, and a mover that has not swapped by then gives up.
- ``pruning``: the versions prunes have decided to delete, each until a lapse time; a
  rollback refuses them. Prunes running at once add to it and each removes only its own.

Each writer reads this object, then CURRENT, then swaps this object by its etag: a writer whose
swap fails re-reads both, so of a rollback and an expiry (or a prune) one always sees the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from batch_layer.catalog import is_validated, list_versions
from lambda_contracts.layout import Layout
from lambda_contracts.retention import RETENTION_KEY, Retention, now_ms, read_retention

ATTEMPTS = 20
HOLD_MS = 600_000  # a move takes milliseconds; ten minutes is far more than any stall


class RetentionConflict(RuntimeError):
    """The retention record kept moving under this caller (many concurrent writers)."""


def update(layout: Layout, change: Callable[[Retention], Retention | None]) -> Retention:
    """Apply ``change`` to the record by compare-and-swap, re-reading on a conflict.

    ``change`` may read other state (CURRENT) after the record: a swap that succeeds means no
    other writer changed the record in between. It returns None to leave the record as is.
    """
    for _ in range(ATTEMPTS):
        record, etag = read_retention(layout)
        new = change(record)
        if new is None or new == record:
            return record
        if layout.store.cas(RETENTION_KEY, etag, new.to_json()) is not None:
            return new
    raise RetentionConflict(f"{RETENTION_KEY} kept moving; try again")


def raise_speed_floor(layout: Layout, wanted_ms: Callable[[], int]) -> int:
    """Record that speed rows below ``wanted_ms()`` (evaluated after the record was read, so
    it sees CURRENT as of then) will be deleted, never above a hold; return the new floor.

    The caller deletes rows below the returned floor only after this returns.
    """

    def change(record: Retention) -> Retention:
        below = min([wanted_ms(), *record.live_holds().values()])
        return replace(record, speed_expired_below_ms=max(below, record.speed_expired_below_ms))

    return update(layout, change).speed_expired_below_ms


class Unreachable(RuntimeError):
    """A version a rollback (or a downward publish) cannot move CURRENT to exactly."""


def reason_unreachable(record: Retention, version: str, horizon_ms: int) -> str | None:
    """Why CURRENT cannot move to ``version`` exactly, or None if it can."""
    if version in record.live_pruning():
        return f"version {version} is being pruned (deleted)"
    if horizon_ms < record.speed_expired_below_ms:
        return (
            f"version {version} has horizon {horizon_ms}, but the speed rows below "
            f"{record.speed_expired_below_ms} are expired: its answers would undercount"
        )
    return None


def hold(layout: Layout, version: str, horizon_ms: int) -> int:
    """Reserve ``version``'s speed rows and files before CURRENT moves to it; raise
    Unreachable (nothing changed) if they are already gone or going. Returns when the hold
    lapses (epoch ms): the caller must have swapped CURRENT by then."""
    until = now_ms() + HOLD_MS

    def change(record: Retention) -> Retention:
        why = reason_unreachable(record, version, horizon_ms)
        if why is not None:
            raise Unreachable(why)
        live = {v: hold for v, hold in record.holds.items() if v in record.live_holds()}
        return replace(record, holds={**live, version: (horizon_ms, until)})

    update(layout, change)
    return until


def release(layout: Layout, version: str) -> None:
    """Drop the hold on ``version`` (CURRENT names it now, or the move was given up)."""

    def change(record: Retention) -> Retention | None:
        if version not in record.holds:
            return None
        return replace(record, holds={v: h for v, h in record.holds.items() if v != version})

    update(layout, change)


def mark_pruning(layout: Layout, decide: Callable[[Retention], list[str]]) -> tuple[list[str], int]:
    """Record the versions ``decide`` (given the record, never a held one) says to delete,
    beside those other prunes marked; return them and when the marks lapse (epoch ms): the
    caller deletes nothing after that."""
    chosen: list[str] = []
    until = now_ms() + HOLD_MS

    def change(record: Retention) -> Retention:
        chosen[:] = [v for v in decide(record) if v not in record.live_holds()]
        live = {v: u for v, u in record.pruning.items() if v in record.live_pruning()}
        return replace(record, pruning={**live, **dict.fromkeys(chosen, until)})

    update(layout, change)
    return chosen, until


def done_pruning(layout: Layout, versions: list[str], until_ms: int) -> None:
    """The deletions of the prune that marked ``versions`` until ``until_ms`` are over (their
    manifests are gone: a rollback finds nothing to use); marks another prune set stay."""

    def change(record: Retention) -> Retention | None:
        left = {v: u for v, u in record.pruning.items() if v not in versions or u != until_ms}
        return None if left == record.pruning else replace(record, pruning=left)

    update(layout, change)


def rollback_reach(layout: Layout) -> dict[str, str | None]:
    """{version: why a rollback cannot reach it, "CURRENT", or None if it can}."""
    record, _ = read_retention(layout)
    current = layout.read_current()
    reach: dict[str, str | None] = {}
    for version in list_versions(layout):
        manifest = layout.read_manifest(version)
        if current is not None and current.version == version:
            reach[version] = "CURRENT"
        elif manifest is None or not is_validated(manifest):
            reach[version] = "not validated"
        else:
            reach[version] = reason_unreachable(record, version, manifest.horizon_ms)
    return reach
