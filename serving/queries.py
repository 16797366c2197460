"""Answer a query from one snapshot: batch rows of version V (H) + speed rows with bucket >= H.

Each function returns the merged result and how many events each side contributed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from lambda_contracts.layout import BatchPointer
from lambda_contracts.views import ACCOUNT_MINUTE, GLOBAL_MINUTE, Key, Measures, View
from serving.batch_store import BatchStore
from serving.merge import merge_rows, roll_up, total
from serving.speed_store import SpeedReader
from serving.watermark import EndOffsetsReading, speed_watermark_ms

T = TypeVar("T")


class Granularity(StrEnum):
    minute = "minute"
    hour = "hour"
    day = "day"

    @property
    def ms(self) -> int:
        return {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}[self.value]


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
    ) -> None:
        self.batch = batch
        self.speed = speed
        self.observe = observe  # told how many events each side contributed
        self.end_offsets = end_offsets
        self.partitions = partitions

    def speed_watermark_ms(self, ends: EndOffsetsReading | None = None) -> int | None:
        """The time up to which every partition is counted by speed (:mod:`serving.watermark`);
        ``ends``: an end-offsets reading the caller already holds (else one is taken)."""
        reading = ends if ends is not None else self.end_offsets()
        return speed_watermark_ms(self.speed.partitions(), self.partitions, reading)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.batch.current())

    def consistent(self, compute: Callable[[Snapshot], T], attempts: int = 5) -> tuple[Snapshot, T]:
        """Run ``compute`` on one snapshot; redo it if a publish happened meanwhile.

        A publish may be followed by expiry of speed rows below the new horizon. If CURRENT is
        unchanged after the speed rows were read, no newer version — hence no expiry that this
        snapshot depends on — happened before the read ended, so the answer is consistent.
        """
        for _ in range(attempts):
            snap = self.snapshot()
            result = compute(snap)
            after = self.batch.layout.read_current()
            if after == snap.pointer:
                return snap, result
        return snap, result  # publishes every few minutes: unreachable in practice

    def _merged(
        self,
        snap: Snapshot,
        view: View,
        start_ms: int,
        end_ms: int,
        group_by: tuple[str, ...],
        filters: dict[str, str] | None = None,
    ) -> dict[Key, Measures]:
        batch_rows = (
            self.batch.rows(snap.pointer.version, view, start_ms, end_ms, group_by, filters)
            if snap.pointer
            else []
        )
        speed_rows = self.speed.rows(view, snap.horizon_ms, start_ms, end_ms, group_by, filters)
        count = view.measure_index("count")
        from_batch = sum(m[count] for _, m in batch_rows)
        from_speed = sum(m[count] for _, m in speed_rows)
        snap.batch_events += from_batch
        snap.speed_events += from_speed
        self.observe("batch", from_batch)
        self.observe("speed", from_speed)
        return merge_rows(view, batch_rows, speed_rows)

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
        minutes = self._merged(snap, view, start_ms, end_ms, ("window_start",), filters)
        size = granularity.ms
        rolled = roll_up(view, minutes, lambda k: (k[0] - k[0] % size,))
        return sorted((k[0], view.labelled(v)) for k, v in rolled.items())

    def summary(
        self, snap: Snapshot, start_ms: int, end_ms: int, account_id: str | None = None
    ) -> dict[str, int] | None:
        view = GLOBAL_MINUTE if account_id is None else ACCOUNT_MINUTE
        filters = None if account_id is None else {"source_account_id": account_id}
        value = total(view, self._merged(snap, view, start_ms, end_ms, (), filters).values())
        return None if value is None else view.labelled(value)

    def top_accounts(
        self, snap: Snapshot, start_ms: int, end_ms: int, by_sum: bool, limit: int
    ) -> list[tuple[str, dict[str, int]]]:
        view = ACCOUNT_MINUTE
        per_account = self._merged(snap, view, start_ms, end_ms, ("source_account_id",))
        measure = view.measure_index("sum" if by_sum else "count")
        ranked = sorted(per_account.items(), key=lambda kv: (-kv[1][measure], kv[0][0]))
        return [(k[0], view.labelled(v)) for k, v in ranked[:limit]]
