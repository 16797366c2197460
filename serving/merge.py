"""Merge batch and speed rows of a view and roll them up — pure functions.

The algorithm (Summingbird's ClientStore, with our ingest buckets as BatchIDs):

- The batch view of version V covers every event with ingest bucket < H (H exclusive).
- The speed store holds rows keyed by (view key, ingest bucket); only rows with bucket >= H
  are read, so each event is in exactly one of the two inputs whatever its lateness.
- Rows of the same key from both sides are combined with the view's measures (a monoid:
  counts and sums add, min and max keep the extreme).
- A roll-up to a coarser window (hour, day) floors the window start and combines again.

Because the measures are associative and commutative, the answer does not depend on which
side an event came from, nor on the order of combination.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lambda_contracts.views import Key, Measures, View

Rows = Iterable[tuple[Key, Measures]]


def merge_rows(view: View, *sources: Rows) -> dict[Key, Measures]:
    """Combine rows from every source by key."""
    merged: dict[Key, Measures] = {}
    for source in sources:
        for key, value in source:
            prev = merged.get(key)
            merged[key] = value if prev is None else view.combine(prev, value)
    return merged


def roll_up(view: View, rows: dict[Key, Measures], key_of: Any) -> dict[Key, Measures]:
    """Re-key rows with ``key_of(key)`` (e.g. floor the window to an hour) and combine."""
    return merge_rows(view, ((key_of(k), v) for k, v in rows.items()))


def total(view: View, rows: Iterable[Measures]) -> Measures | None:
    """All rows combined into one value (None when there is none)."""
    out: Measures | None = None
    for value in rows:
        out = value if out is None else view.combine(out, value)
    return out
