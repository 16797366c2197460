"""Store transactions in flight beside the poll loop, joined when the store falls behind.

The speed store's transaction runs in the store process (:mod:`speed_layer.store_process`),
so it overlaps the decoding and validation of the next poll batches on another core; this
thread only waits for its answer. Transactions run in submission order, on one thread; the
loop keeps at most ``MAX_IN_FLIGHT`` of them submitted and accounts for each
(:meth:`Committer.take`) in that order. Each transaction is fenced by the offsets its batches
start from, so one that follows a failed transaction on the same partitions fails too.

Group commit: when the thread is free to start a transaction, it takes every one submitted
and not started yet (up to ``MAX_GROUP_EVENTS``) and applies their batches as one, each
partition's runs of records joined in log order. A store transaction's cost per event falls
with its size — each view's upsert writes a key once per transaction, and the pages it
touches are written once — so a store that falls behind catches up faster instead of
falling further (``bench/README.md``, "Group commit"). When the store keeps up, each
transaction is one poll batch, as before. The joined transaction is still one transaction
that moves the offsets with the views: all of its poll batches count, or none.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from speed_layer.event_block import EventBlock
from speed_layer.store import AppliedBatch, PartitionBatch


@dataclass
class Pending:
    """A submitted transaction: its batches and when it was submitted. (Not the poll batch's
    records: should the store refuse one, the records are read again from Kafka and applied
    in the loop's thread; holding them here would keep the poll batches alive.)"""

    batches: list[PartitionBatch]
    future: Future[AppliedBatch] = field(default_factory=Future)
    submitted_at: float = field(default_factory=time.perf_counter)

    @property
    def events(self) -> int:
        return sum(len(b.rows) for b in self.batches)


# One running while the others wait to be joined into the next: the loop runs up to five poll
# batches ahead of a store that falls behind (their records are held until they are applied).
MAX_IN_FLIGHT = 6
# A joined transaction's events at most: past 100,000 the cost per event barely falls, and
# the transaction's temporary rows and the loop's wait grow with it.
MAX_GROUP_EVENTS = 100_000
NOTHING = AppliedBatch(0, 0, 0)


def joined(batches: Sequence[PartitionBatch]) -> list[PartitionBatch]:
    """Consecutive transactions' batches as one transaction's: per partition, from the first
    batch's expected offset to the last one's next offset, the records in log order."""
    by_partition: dict[int, PartitionBatch] = {}
    for batch in batches:
        into = by_partition.get(batch.partition)
        if into is None:
            rows = EventBlock({name: list(column) for name, column in batch.rows.columns.items()})
            by_partition[batch.partition] = PartitionBatch(
                batch.partition,
                batch.expected_offset,
                batch.next_offset,
                rows,
                batch.rejected,
                batch.max_kafka_ts,
            )
            continue
        if batch.expected_offset != into.next_offset:
            raise ValueError(
                f"partition {batch.partition}: a batch from offset {batch.expected_offset} "
                f"does not follow one ending at {into.next_offset}"
            )
        into.rows.extend(batch.rows)
        into.next_offset = batch.next_offset
        into.rejected += batch.rejected
        into.max_kafka_ts = max(into.max_kafka_ts, batch.max_kafka_ts)
    return list(by_partition.values())


class Committer:
    def __init__(
        self,
        apply: Callable[[list[PartitionBatch]], AppliedBatch],
        max_group_events: int = MAX_GROUP_EVENTS,
    ) -> None:
        self._apply = apply
        self._max_group_events = max_group_events
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speed-commit")
        self._pending: deque[Pending] = deque()  # submitted, not accounted for yet
        self._waiting: deque[Pending] = deque()  # submitted, not started yet
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> bool:
        return bool(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= MAX_IN_FLIGHT

    def submit(self, batches: list[PartitionBatch]) -> None:
        if self.full:
            raise RuntimeError(f"{MAX_IN_FLIGHT} transactions in flight: take() one first")
        pending = Pending(batches)
        self._pending.append(pending)
        with self._lock:
            self._waiting.append(pending)
        self._pool.submit(self._run_waiting)

    def _next_group(self) -> list[Pending]:
        """The transactions waiting, oldest first, up to the group's size (at least one)."""
        group: list[Pending] = []
        events = 0
        with self._lock:
            while self._waiting:
                size = self._waiting[0].events
                if group and events + size > self._max_group_events:
                    break
                group.append(self._waiting.popleft())
                events += size
        return group

    def _run_waiting(self) -> None:
        """Apply the waiting transactions as one (a no-op when an earlier run took them).
        Its outcome goes to the oldest; the others joined it and count nothing themselves.
        A failure fails them all: none of their records counted."""
        group = self._next_group()
        if not group:
            return
        batches = [b for pending in group for b in pending.batches]
        try:
            applied = self._apply(joined(batches) if len(group) > 1 else batches)
        except BaseException as exc:
            for pending in group:
                pending.future.set_exception(exc)
            return
        group[0].future.set_result(applied)
        for pending in group[1:]:
            pending.future.set_result(NOTHING)

    def unsettled_from(self) -> dict[int, int | None]:
        """Per partition with a transaction in flight, the stored offset its oldest one starts
        from: the store holds that partition's records below it only (None: none stored)."""
        starts: dict[int, int | None] = {}
        for pending in self._pending:
            for batch in pending.batches:
                starts.setdefault(batch.partition, batch.expected_offset)
        return starts

    def take(self) -> Pending | None:
        """The oldest transaction in flight, once it has ended (None if there is none); its
        ``future.result()`` gives its outcome or raises its error."""
        if not self._pending:
            return None
        pending = self._pending.popleft()
        pending.future.exception()  # waits
        return pending

    def close(self) -> None:
        self._pool.shutdown(wait=True)
