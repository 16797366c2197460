"""Which batch version answers: a new one only once it is loaded and warmed, off the request path.

A publish moves CURRENT; loading the new version (its Parquet into DuckDB and sorted arrays)
takes from a fraction of a second to seconds, growing with the version. Requests must not wait
for it, as Pinot and Druid do not query a segment before it is loaded. So when a worker sees
CURRENT name a version it has not loaded, a loader thread loads it and warms the batch-part
cache with the answers of the most recently used queries on it; until then, answers keep
coming from the version served so far.

That older version V (horizon H) still gives exact answers as long as every speed row with
ingest bucket >= H exists: the batch layer keeps the rows of the versions it may roll back to
and raises the speed floor (``batch/RETENTION``) before it deletes any, so answers from V are
exact while the floor is <= H. :meth:`VersionSwitch.pointer` checks that when it picks V, and
the query service checks it again after the speed rows were read (a fresh reading). Only
when there is no such version — at start-up, or after the floor passed it — does a request
wait for the load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from lambda_contracts.layout import BatchPointer, Layout
from serving.batch_cache import BatchCache, BatchPart
from serving.batch_store import BatchStore
from serving.row_query import RowQuery
from serving.snapshot_cache import current_reader, speed_floor_reader

log = structlog.get_logger("serving.version_switch")
WARM_QUERIES = 5_000  # the most recently used queries whose batch parts a new version gets
WARM_BUDGET_S = 2.0  # at most this long: warming is worth little beyond the hottest queries


class Load:
    """One version being loaded by the loader thread; waiters block on ``done``."""

    def __init__(self, pointer: BatchPointer) -> None:
        self.pointer = pointer
        self.done = threading.Event()
        self.error: BaseException | None = None


class VersionSwitch:
    def __init__(
        self,
        layout: Layout,
        batch: BatchStore,
        cache: BatchCache,
        observe_switch: Callable[[float, int], None] = lambda seconds, warmed: None,
    ) -> None:
        self.batch = batch
        self.cache = cache
        self.current = current_reader(layout)
        self.floor = speed_floor_reader(layout)
        self.observe_switch = observe_switch  # told how long a switch took, parts warmed
        self._serving: BatchPointer | None = None
        self._load: Load | None = None
        self._lock = threading.Lock()

    @property
    def serving(self) -> BatchPointer | None:
        """The pointer answers came from last."""
        return self._serving

    def exact(self, pointer: BatchPointer, fresh: bool = False) -> bool:
        """Whether ``pointer``'s answers are exact: no speed row at or above its horizon is
        expired (``fresh``: the floor as of now, not a cached reading)."""
        return self.floor.read(fresh) <= pointer.horizon_ms

    def would_wait(self) -> bool:
        """Whether :meth:`pointer` would block for a load (cheap: cached readings)."""
        current = self.current.read()
        if current is None or current == self._serving or self.batch.is_loaded(current.version):
            return False
        serving = self._serving
        return serving is None or not self.exact(serving)

    def pointer(self) -> BatchPointer | None:
        """The version to answer from now: CURRENT if loaded, else (while it loads) the one
        served so far if still exact, else CURRENT once loaded (this call waits)."""
        while True:
            current = self.current.read()
            serving = self._serving
            if current is None or current == serving:
                return current
            if self.batch.is_loaded(current.version) and not self._loading(current):
                self._serving = current  # loaded before (a rollback to a recent version)
                return current
            load = self._start(current)
            if serving is not None and self.exact(serving):
                return serving
            load.done.wait()  # nothing exact to answer from meanwhile
            if load.error is not None and load.pointer == current:
                raise load.error
            # loaded (the next turn answers from it), or that was another version's load

    def _loading(self, pointer: BatchPointer) -> bool:
        load = self._load
        return load is not None and load.pointer.version == pointer.version

    def _start(self, pointer: BatchPointer) -> Load:
        """The load of ``pointer``: the one under way, or a new one in the loader thread."""
        with self._lock:
            load = self._load
            if load is not None and load.pointer == pointer:
                return load
            if load is not None and not load.done.is_set():
                return load  # one load at a time; the next call starts the newer one
            load = self._load = Load(pointer)
        threading.Thread(target=self._run, args=(load,), name="version-loader", daemon=True).start()
        return load

    def _run(self, load: Load) -> None:
        started = time.monotonic()
        try:
            self.batch.ensure_loaded(load.pointer.version)
            warmed = self._warm(load.pointer)
        except BaseException as exc:  # told to the waiters; the next request retries
            load.error = exc
            log.warning("batch version not loaded", version=load.pointer.version, error=repr(exc))
        else:
            self._serving = load.pointer
            seconds = time.monotonic() - started
            self.observe_switch(seconds, warmed)
            log.info(
                "batch version switched",
                version=load.pointer.version,
                seconds=round(seconds, 3),
                warmed_parts=warmed,
            )
        finally:
            with self._lock:
                if self._load is load:
                    self._load = None
            load.done.set()

    def _warm(self, pointer: BatchPointer) -> int:
        """Stage the batch parts of the hottest queries on ``pointer``'s version; how many."""
        deadline = time.monotonic() + WARM_BUDGET_S
        parts: list[tuple[RowQuery, BatchPart]] = []
        for query in self.cache.hot_queries(WARM_QUERIES):
            if time.monotonic() > deadline:
                break
            if not isinstance(query, RowQuery):
                continue
            rows = self.batch.rows(pointer.version, query)
            parts.append((query, BatchPart(pointer.version, pointer.horizon_ms, tuple(rows))))
        self.cache.stage(pointer, parts)
        return len(parts)
