"""Store transactions in flight beside the poll loop.

The speed store's transaction runs in the store process (:mod:`speed_layer.store_process`),
so it overlaps the decoding and validation of the next poll batches on another core; this
thread only waits for its answer. Transactions run in submission order, on one thread; the
loop keeps at most ``MAX_IN_FLIGHT`` of them submitted and accounts for each
(:meth:`Committer.take`) in that order. Each transaction is fenced by the offsets its batches
start from, so one that follows a failed transaction on the same partitions fails too.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from speed_layer.store import AppliedBatch, PartitionBatch


@dataclass
class Pending:
    """A submitted transaction: its batches and when it was submitted. (Not the poll batch's
    records: should the store refuse one, the records are read again from Kafka and applied
    in the loop's thread; holding them here would keep three poll batches alive.)"""

    batches: list[PartitionBatch]
    future: Future[AppliedBatch]
    submitted_at: float = field(default_factory=time.perf_counter)


# Two: one running while the next waits, so that the committer thread never waits for the
# poll loop to hand it work while the loop decodes a batch.
MAX_IN_FLIGHT = 2


class Committer:
    def __init__(self, apply: Callable[[list[PartitionBatch]], AppliedBatch]) -> None:
        self._apply = apply
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speed-commit")
        self._pending: deque[Pending] = deque()

    @property
    def in_flight(self) -> bool:
        return bool(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= MAX_IN_FLIGHT

    def submit(self, batches: list[PartitionBatch]) -> None:
        if self.full:
            raise RuntimeError(f"{MAX_IN_FLIGHT} transactions in flight: take() one first")
        self._pending.append(Pending(batches, self._pool.submit(self._apply, batches)))

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
