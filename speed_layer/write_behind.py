"""Durable writes in submission order on a thread of their own, stopping at the first failure.

The landing zone's writes (Parquet encoding, then a put: fsync and rename, or an S3 PUT) spend
most of their time outside the GIL; done in the poll loop they stall the decoding of the next
poll batches. Here they run behind it, in order, on one thread. Order is what makes it safe: a
partition's progress record is only ever written after the files it vouches for, so the first
write that fails also cancels every write queued after it (a later progress record would
vouch for the missing file). The failure is kept and raised to the loop until
:meth:`WriteBehind.recover`, which the loop calls before it reads the durable progress again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class WriteBehind:
    def __init__(self, name: str, max_pending: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: deque[Future[None]] = deque()
        self._max_pending = max_pending
        self._failure: BaseException | None = None  # written by the worker thread only
        self._raised = False  # whether the failure reached the caller

    def submit(self, write: Callable[[], None]) -> None:
        """Queue ``write`` behind the others; wait for the oldest while ``max_pending`` are
        queued (a slow landing zone slows the loop instead of filling the memory). Raises an
        earlier write's failure instead of queueing more."""
        self.raise_failure()
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._run, write))

    def _run(self, write: Callable[[], None]) -> None:
        if self._failure is not None:
            return  # cancelled: an earlier write failed
        try:
            write()
        except BaseException as exc:
            self._failure = exc

    def drain(self) -> None:
        """Wait until every queued write has ended (written or cancelled)."""
        while self._pending:
            self._pending.popleft().result()

    def wait(self) -> None:
        """:meth:`drain`, then raise the failure if a write failed."""
        self.drain()
        self.raise_failure()

    def raise_failure(self) -> None:
        if self._failure is not None:
            self._raised = True
            raise self._failure

    def recover(self) -> BaseException | None:
        """Wait for the queue, then forget its failure: the caller reads the durable state
        again and takes it from there. Returns a failure that was never raised (the caller
        recovered for another reason), so that it is still reported."""
        self.drain()
        unraised = None if self._raised else self._failure
        self._failure, self._raised = None, False
        return unraised

    def close(self) -> None:
        """Let the queued writes end and stop the thread (a failure stays unraised)."""
        self.drain()
        self._pool.shutdown(wait=True)
