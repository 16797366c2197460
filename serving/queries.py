"""Answer a query from one snapshot: batch rows of version V (H) + speed rows with bucket >= H.

Each function returns the merged result and how many events each side contributed. The batch
part of an answer comes from the :class:`~serving.batch_cache.BatchCache` when the same query
was answered on the same batch identity before.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

import anyio.to_thread

from lambda_contracts.buckets import floor_to
from lambda_contracts.declared_views import DeclaredView
from lambda_contracts.layout import BatchPointer
from lambda_contracts.view_builds import BuildState, build_state
from lambda_contracts.views import ACCOUNT_MINUTE, GLOBAL_MINUTE, WINDOWS_MS, Key, Measures, View
from serving.batch_cache import BatchCache, BatchPart, MixedSnapshotError, identity_of
from serving.batch_store import BatchStore
from serving.merge import Rows, merge_rows, roll_up, total
from serving.row_query import RowQuery
from serving.snapshot_cache import Refreshed
from serving.speed_store import SpeedReader
from serving.version_switch import VersionSwitch
from serving.watermark import EndOffsetsReading, speed_watermark_ms

T = TypeVar("T")


class Granularity(StrEnum):
    minute = "minute"
    hour = "hour"
    day = "day"

    @property
    def ms(self) -> int:
        return WINDOWS_MS[self.value]


@dataclass
class Snapshot:
    """What one request reads: the CURRENT pointer, read once, and the time of the read."""

    pointer: BatchPointer | None
    as_of_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    batch_events: int = 0
    speed_events: int = 0

    @property
    def horizon_ms(self) -> int:
        return self.pointer.horizon_ms if self.pointer else 0


class QueryService:
    def __init__(
        self,
        batch: BatchStore,
        speed: SpeedReader,
        observe: Callable[[str, int], None] = lambda side, events: None,
        end_offsets: Callable[[], EndOffsetsReading | None] = lambda: None,
        partitions: int = 1,
        cache: BatchCache | None = None,
        observe_switch: Callable[[float, int], None] = lambda seconds, warmed: None,
    ) -> None:
        self.batch = batch
        self.speed = speed
        self.observe = observe  # told how many events each side contributed
        self.end_offsets = end_offsets
        self.partitions = partitions
        self.cache = cache if cache is not None else BatchCache(0)
        self.switch = VersionSwitch(batch.layout, batch, self.cache, observe_switch)
        self.recent_watermark = Refreshed(self.speed_watermark_ms)

    def speed_watermark_ms(self, ends: EndOffsetsReading | None = None) -> int | None:
        """The time up to which every partition is counted by speed (:mod:`serving.watermark`);
        ``ends``: an end-offsets reading the caller already holds (else one is taken)."""
        reading = ends if ends is not None else self.end_offsets()
        return speed_watermark_ms(self.speed.partitions(), self.partitions, reading)

    def snapshot(self) -> Snapshot:
        """The batch version to answer from (:class:`~serving.version_switch.VersionSwitch`:
        CURRENT once loaded and warmed), the cache following it."""
        pointer = self.switch.pointer()
        self.cache.switch(pointer)
        return Snapshot(pointer)

    async def prepare(self) -> None:
        """Wait in a worker thread, not on the event loop, if the snapshot would wait for a
        version's load (at start-up: there is no version to answer from meanwhile)."""
        if self.switch.would_wait():
            await anyio.to_thread.run_sync(self.switch.pointer)

    def consistent(self, compute: Callable[[Snapshot], T], attempts: int = 5) -> tuple[Snapshot, T]:
        """Run ``compute`` on one snapshot; redo it if its speed rows may have been expired
        meanwhile.

        A publish may be followed by expiry of speed rows below the new horizon. If CURRENT is
        the snapshot's version and unchanged after the speed rows were read, no newer version
        — hence no expiry that this snapshot depends on — happened before the read ended. If
        CURRENT is another version (one loading, or published meanwhile), the answer is exact
        if the speed floor, read after the speed rows, is still at or below the snapshot's
        horizon: the floor is raised before any row below it is deleted. Both checks read as
        of now (``fresh``: on S3 not a cached reading).
        """
        for _ in range(attempts):
            snap = self.snapshot()
            result = compute(snap)
            after = self.switch.current.read(fresh=True)
            if after == snap.pointer:
                return snap, result
            if snap.pointer is not None and self.switch.exact(snap.pointer, fresh=True):
                return snap, result
        return snap, result  # publishes every few minutes: unreachable in practice

    def _batch_part(self, snap: Snapshot, q: RowQuery) -> BatchPart | None:
        """The batch side of the answer on this snapshot's version, from the cache if there."""
        pointer = snap.pointer
        if pointer is None:
            return None
        part = self.cache.get(pointer, q)
        if part is None:
            rows = self.batch.rows(pointer.version, q)
            part = BatchPart(pointer.version, pointer.horizon_ms, tuple(rows))
            self.cache.put(q, part)
        return part

    def _merged(self, snap: Snapshot, q: RowQuery, counted: bool = True) -> dict[Key, Measures]:
        """Batch part of V (H) + speed rows with bucket >= H, keyed by ``q.group_by``;
        ``window_start`` (if grouped by) floored to windows of ``q.window_ms``. ``counted``:
        whether the rows' counts are the answer's events (not a distinct count's set)."""
        return merge_rows(q.view, *self._parts(snap, q, counted))

    def _parts(self, snap: Snapshot, q: RowQuery, counted: bool = True) -> tuple[Rows, Rows]:
        """The two sides :meth:`_merged` combines: (batch rows, speed rows), each keyed as the
        answer is, one row per key."""
        view, group_by, window_ms = q.view, q.group_by, q.window_ms
        part = self._batch_part(snap, q)
        if part is not None and part.identity != identity_of(snap.pointer):
            # Never: the cache files parts by identity. Checked because a part merged with
            # speed rows of another horizon would count events twice or not at all.
            raise MixedSnapshotError(f"batch part {part.identity} with snapshot {snap.pointer}")
        batch_rows = part.rows if part is not None else ()
        speed_rows = self.speed.rows(q, snap.horizon_ms)
        if window_ms and "window_start" in group_by:
            at = group_by.index("window_start")
            speed_rows = list(
                roll_up(
                    view,
                    dict(speed_rows),  # one row per key: the store grouped them
                    lambda k: (*k[:at], floor_to(k[at], window_ms), *k[at + 1 :]),
                ).items()
            )
        if counted:
            self._count(snap, view, batch_rows, speed_rows)
        return batch_rows, speed_rows

    def _count(self, snap: Snapshot, view: View, batch_rows: Rows, speed_rows: Rows) -> None:
        """Add the events of each side's rows to the answer's meta and the metrics."""
        count = view.measure_index("count")
        from_batch = sum(m[count] for _, m in batch_rows)
        from_speed = sum(m[count] for _, m in speed_rows)
        snap.batch_events += from_batch
        snap.speed_events += from_speed
        self.observe("batch", from_batch)
        self.observe("speed", from_speed)

    def series(
        self,
        snap: Snapshot,
        start_ms: int,
        end_ms: int,
        granularity: Granularity,
        account_id: str | None = None,
    ) -> list[tuple[int, dict[str, int]]]:
        view = GLOBAL_MINUTE if account_id is None else ACCOUNT_MINUTE
        filters = None if account_id is None else {"source_account_id": account_id}
        size = granularity.ms
        window_ms = None if size == view.window_ms else size
        windows = self._merged(
            snap, RowQuery.of(view, start_ms, end_ms, ("window_start",), filters, window_ms)
        )
        return sorted((k[0], view.labelled(v)) for k, v in windows.items())

    def series_by_side(
        self, snap: Snapshot, start_ms: int, end_ms: int, granularity: Granularity
    ) -> list[tuple[int, dict[str, int], dict[str, int] | None, dict[str, int] | None]]:
        """Every payment per window, as :meth:`series`, with the part of each window that the
        batch view and the speed view contributed: (window, merged, batch, speed). The two
        parts of a window always combine to its merged value, whichever side is empty."""
        view = GLOBAL_MINUTE
        window_ms = None if granularity.ms == view.window_ms else granularity.ms
        q = RowQuery.of(view, start_ms, end_ms, ("window_start",), None, window_ms)
        batch_rows, speed_rows = self._parts(snap, q)
        by_side = merge_rows(view, batch_rows), merge_rows(view, speed_rows)
        merged = merge_rows(view, *(d.items() for d in by_side))
        return [
            (
                key[0],
                view.labelled(value),
                *(None if key not in side else view.labelled(side[key]) for side in by_side),
            )
            for key, value in sorted(merged.items())
        ]

    def summary(
        self, snap: Snapshot, start_ms: int, end_ms: int, account_id: str | None = None
    ) -> dict[str, int] | None:
        view = GLOBAL_MINUTE if account_id is None else ACCOUNT_MINUTE
        filters = None if account_id is None else {"source_account_id": account_id}
        value = total(
            view, self._merged(snap, RowQuery.of(view, start_ms, end_ms, (), filters)).values()
        )
        return None if value is None else view.labelled(value)

    def top_accounts(
        self, snap: Snapshot, start_ms: int, end_ms: int, by_sum: bool, limit: int
    ) -> list[tuple[str, dict[str, int]]]:
        """The first ``limit`` accounts by sum (or count), ties by account id, exactly.

        Without ranking every account in Python: the speed side (events past the horizon)
        names the accounts it adds to, and DuckDB returns only the batch rows that can still
        rank first (:meth:`BatchStore.top_rows`). The meta counts every event of the range,
        as the other answers do."""
        view = ACCOUNT_MINUTE
        label = "sum" if by_sum else "count"
        q = RowQuery.of(view, start_ms, end_ms, ("source_account_id",))
        speed_rows = self.speed.rows(q, snap.horizon_ms)
        at = view.measure_index(label)
        batch_rows: Rows = ()
        if snap.pointer is not None:
            touched = [key[0] for key, _ in speed_rows]
            batch_rows = self.batch.top_rows(
                snap.pointer.version, q, view.measures[at].name, limit + len(touched), touched
            )
        per_account = merge_rows(view, batch_rows, speed_rows)
        ranked = heapq.nsmallest(limit, per_account.items(), key=lambda kv: (-kv[1][at], kv[0]))
        whole = self._batch_part(snap, RowQuery.of(GLOBAL_MINUTE, start_ms, end_ms))
        self._count(snap, view, whole.rows if whole else (), speed_rows)
        return [(k[0], view.labelled(v)) for k, v in ranked]

    def view_rows(
        self,
        snap: Snapshot,
        view: View,
        span: tuple[int, int],
        filters: dict[str, str],
        group_by: str | None = None,
        window_ms: int | None = None,
    ) -> dict[Key, Measures]:
        """Rows of any view over ``span``: one per ``group_by`` value and window of
        ``window_ms`` (each when given), or one over the whole range (empty if no event)."""
        columns = (*((group_by,) if group_by else ()), *(("window_start",) if window_ms else ()))
        coarser = window_ms if window_ms and window_ms != view.window_ms else None
        return self._merged(snap, RowQuery.of(view, *span, columns, filters, coarser))

    def build_state(self, snap: Snapshot, declared: DeclaredView) -> BuildState:
        """Whether ``declared`` is answered exactly on this snapshot
        (:mod:`serving.served_views`)."""
        pointer = snap.pointer
        held = pointer is not None and self.batch.holds(pointer.version, declared.totals.name)
        deployed = self.speed.view_versions().get(declared.totals.name)
        return build_state(deployed, held, snap.horizon_ms)

    def declared_rows(
        self,
        snap: Snapshot,
        declared: DeclaredView,
        span: tuple[int, int],
        filters: dict[str, str],
        group_by: str | None = None,
        window_ms: int | None = None,
    ) -> dict[Key, dict[str, int]]:
        """Rows of a declared view (serving on this snapshot), as :meth:`view_rows` gives a
        built-in view's: its totals and sets grouped by the stores, combined by
        :meth:`DeclaredView.answer`."""
        grouped = (group_by,) if group_by else ()
        windowed = ("window_start",) if window_ms else ()
        coarser = window_ms if window_ms and window_ms != declared.totals.window_ms else None
        columns = (*grouped, *windowed)
        totals = self._merged(snap, RowQuery.of(declared.totals, *span, columns, filters, coarser))
        sets = {
            s.label: list(
                self._merged(
                    snap,
                    RowQuery.of(s.view, *span, (*grouped, s.column, *windowed), filters, coarser),
                    counted=False,
                )
            )
            for s in declared.sets
        }
        return declared.answer(totals.items(), sets, grouped, window_ms, columns)
