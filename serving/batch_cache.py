"""The batch part of answers, cached for the CURRENT batch version only.

A batch version is immutable, so the batch side of an answer depends only on (version,
query). Its horizon H decides which speed rows complete it (ingest bucket >= H), so a part is
filed under the whole batch identity (version, horizon) and carries that identity with it:
:func:`serving.queries.QueryService` refuses to merge a part with speed rows read at another
horizon (:class:`MixedSnapshotError`).

The cache holds ONE generation: when a request's snapshot sees CURRENT at another identity,
:meth:`BatchCache.switch` drops every entry. A part computed from an older snapshot that
arrives after the switch is not stored, and a lookup under any identity but the generation's
misses, so no answer can take a part of another version or horizon. Entries are kept least
recently used first out, within a budget of rows (one row: one key and its measures).

A new version is warmed before it answers (:mod:`serving.version_switch`): the parts of the
most recently used queries are computed on it off the request path and staged
(:meth:`BatchCache.stage`); the switch to its identity starts the generation with them.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from lambda_contracts.layout import BatchPointer
from lambda_contracts.views import Key, Measures

Identity = tuple[str, int]  # (batch version, its horizon in ms)


def identity_of(pointer: BatchPointer | None) -> Identity | None:
    return None if pointer is None else (pointer.version, pointer.horizon_ms)


class MixedSnapshotError(RuntimeError):
    """A batch part and speed rows of different batch identities were about to be merged."""


@dataclass(frozen=True)
class BatchPart:
    """The batch side of one answer: rows of ``version``, covering ingest buckets < horizon."""

    version: str
    horizon_ms: int
    rows: tuple[tuple[Key, Measures], ...]

    @property
    def identity(self) -> Identity:
        return (self.version, self.horizon_ms)


class BatchCache:
    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._generation: Identity | None = None
        self._entries: OrderedDict[Hashable, BatchPart] = OrderedDict()
        self._rows = 0
        self._staged: tuple[Identity, OrderedDict[Hashable, BatchPart]] | None = None
        self.hits = 0
        self.misses = 0

    @property
    def generation(self) -> Identity | None:
        return self._generation

    def __len__(self) -> int:
        return len(self._entries)

    def switch(self, pointer: BatchPointer | None) -> None:
        """Follow CURRENT: a new identity drops every entry of the previous one."""
        identity = identity_of(pointer)
        if identity == self._generation:
            return
        with self._lock:
            if identity != self._generation:
                staged = self._staged
                self._staged = None
                fresh = staged[1] if staged is not None and staged[0] == identity else None
                self._entries = fresh if fresh is not None else OrderedDict()
                self._rows = sum(max(len(p.rows), 1) for p in self._entries.values())
                self._generation = identity

    def hot_queries(self, limit: int) -> list[Hashable]:
        """The ``limit`` most recently used queries of the generation, most recent first."""
        with self._lock:
            return list(itertools.islice(reversed(self._entries), limit))

    def stage(self, pointer: BatchPointer, parts: list[tuple[Hashable, BatchPart]]) -> None:
        """The first entries of ``pointer``'s generation, used when :meth:`switch` reaches it;
        ``parts``: most recent first, within the budget (the rest are dropped)."""
        identity = identity_of(pointer)
        kept: OrderedDict[Hashable, BatchPart] = OrderedDict()
        rows = 0
        for query, part in parts:
            size = max(len(part.rows), 1)
            if part.identity != identity or rows + size > self.max_rows:
                continue
            kept[query] = part
            rows += size
        kept_lru = OrderedDict(reversed(kept.items()))  # least recently used first
        with self._lock:
            self._staged = (identity, kept_lru) if identity is not None else None

    def get(self, pointer: BatchPointer, query: Hashable) -> BatchPart | None:
        with self._lock:
            part = self._entries.get(query) if identity_of(pointer) == self._generation else None
            if part is None:
                self.misses += 1
                return None
            self._entries.move_to_end(query)
            self.hits += 1
            return part

    def put(self, query: Hashable, part: BatchPart) -> None:
        """Keep ``part`` if it is of the current generation and fits the budget."""
        size = max(len(part.rows), 1)
        if size > self.max_rows:
            return
        with self._lock:
            if part.identity != self._generation:
                return  # computed from a snapshot CURRENT has moved past
            old = self._entries.pop(query, None)
            if old is not None:
                self._rows -= max(len(old.rows), 1)
            self._entries[query] = part
            self._rows += size
            while self._rows > self.max_rows:
                _, evicted = self._entries.popitem(last=False)
                self._rows -= max(len(evicted.rows), 1)
