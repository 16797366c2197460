"""The retention record, ``batch/RETENTION``: what the batch layer has expired or is deleting.

The batch layer writes it (``batch_layer.retention``: by compare-and-swap, before it deletes
anything); serving reads its speed floor: an answer from batch version V (horizon H) is exact
only while every speed row with ingest bucket >= H exists, i.e. while the floor is <= H. That
is how serving knows it may keep answering from the version it has loaded while it loads the
next one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from lambda_contracts.layout import Layout

RETENTION_KEY = "batch/RETENTION"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Retention:
    """``speed_expired_below_ms``: every speed row below it may be gone (raised before the
    rows are deleted); ``holds``: {version: (horizon, until)} reserved for a move of CURRENT;
    ``pruning``: {version: until} being deleted by a prune (several prunes may run at once;
    a mark lapses at ``until``, so a prune that died blocks no rollback for good)."""

    speed_expired_below_ms: int = 0
    holds: dict[str, tuple[int, int]] = field(default_factory=dict)
    pruning: dict[str, int] = field(default_factory=dict)

    def live_holds(self) -> dict[str, int]:
        """{version: horizon} of the holds that have not lapsed."""
        at = now_ms()
        return {v: h for v, (h, until) in self.holds.items() if until > at}

    def live_pruning(self) -> set[str]:
        """The versions a prune has marked for deletion and may still be deleting."""
        at = now_ms()
        return {v for v, until in self.pruning.items() if until > at}

    def to_json(self) -> bytes:
        body = {
            "speed_expired_below_ms": self.speed_expired_below_ms,
            "holds": {v: list(hold) for v, hold in self.holds.items()},
            "pruning": self.pruning,
        }
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Retention:
        raw = json.loads(data)
        return cls(
            int(raw.get("speed_expired_below_ms", 0)),
            {str(v): (int(h), int(until)) for v, (h, until) in raw.get("holds", {}).items()},
            _pruning(raw.get("pruning", {})),
        )


def _pruning(raw: Any) -> dict[str, int]:
    """{version: until}; a record written before marks lapsed (a list) marks for an hour."""
    if isinstance(raw, dict):
        return {str(v): int(until) for v, until in raw.items()}
    return {str(v): now_ms() + 3_600_000 for v in raw or ()}


def read_retention(layout: Layout) -> tuple[Retention, str | None]:
    """The record and its etag (a default record and None if none was written yet)."""
    found = layout.store.get_versioned(RETENTION_KEY)
    if found is None:
        return Retention(), None
    return Retention.from_json(found.data), found.etag


def speed_floor(layout: Layout) -> int:
    """Every speed row below this ingest time may be gone."""
    return read_retention(layout)[0].speed_expired_below_ms
