"""One store transaction in flight beside the poll loop.

The speed store's transaction runs mostly inside the database engine (SQLite and the
PostgreSQL driver release the GIL while a statement runs), so it can overlap the decoding and
validation of the next poll batch on another core. At most one transaction is in flight and
they run in submission order, on one thread: the loop submits batch k, prepares batch k+1,
waits for k's outcome, and only then submits k+1. Anything that reads or moves the cursors —
a rebalance, housekeeping, a rewind, a shutdown — waits for the transaction in flight first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from speed_layer.store import AppliedBatch, PartitionBatch


@dataclass
class Pending:
    """A submitted transaction: its batches, the poll batch's records (for the DLQ, should
    the store refuse one) and when it was submitted."""

    batches: list[PartitionBatch]
    polled: Any
    future: Future[AppliedBatch]
    submitted_at: float = field(default_factory=time.perf_counter)


class Committer:
    def __init__(self, apply: Callable[[list[PartitionBatch]], AppliedBatch]) -> None:
        self._apply = apply
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speed-commit")
        self._pending: Pending | None = None

    def submit(self, batches: list[PartitionBatch], polled: Any) -> None:
        if self._pending is not None:
            raise RuntimeError("a transaction is already in flight: take() it first")
        self._pending = Pending(batches, polled, self._pool.submit(self._apply, batches))

    def take(self) -> Pending | None:
        """The transaction in flight, once it has ended (None if there is none); its
        ``future.result()`` gives its outcome or raises its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.future.exception()  # waits
        return pending

    def close(self) -> None:
        self._pool.shutdown(wait=True)
