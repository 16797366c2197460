"""Is this speed process making progress? A pure record of what the consumer loop observed.

A process is *stalled* when it has records to read and reads none of them: one of the
partitions it watches (its own, or every partition of the topic while it owns none) has a
stored offset below the broker's end offset that has not moved for a while. A process that is
caught up, or that advances, is healthy whatever the rate. When the broker cannot be asked
(an offset look-up fails) nothing is confirmed, so a silent client, a frozen broker and a
blocked loop all show up the same way: the stall clock runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ProgressWatch:
    """Per-partition time of the last confirmed progress; all times are monotonic seconds."""

    started_at: float
    _last_ok: dict[int, float] = field(default_factory=dict)
    _offsets: dict[int, int] = field(default_factory=dict)
    _lag: dict[int, int] = field(default_factory=dict)
    _confirmed_at: float | None = None

    def observe(self, now: float, stored: dict[int, int | None], ends: dict[int, int]) -> None:
        """Record one look at the watched partitions: their stored and end offsets."""
        self._confirmed_at = now
        for gone in set(self._last_ok) - set(stored):
            del self._last_ok[gone]
            self._offsets.pop(gone, None)
            self._lag.pop(gone, None)
        for partition, offset in stored.items():
            position = offset or 0
            end = ends.get(partition, 0)
            self._lag[partition] = max(0, end - position)
            first_look = partition not in self._last_ok
            moved = position > self._offsets.get(partition, position)
            if first_look or moved or position >= end:
                self._last_ok[partition] = now
            self._offsets[partition] = position

    def stalled_for(self, now: float) -> float:
        """Seconds since every watched partition was last confirmed caught up or advancing."""
        if self._confirmed_at is None:
            return now - self.started_at
        oldest = min(self._last_ok.values(), default=self._confirmed_at)
        # Nothing confirmed lately (the broker does not answer, the loop is blocked): the
        # stall clock runs from the last confirmation as well.
        return now - min(oldest, self._confirmed_at)

    @property
    def lag(self) -> int:
        """Records behind on the watched partitions at the last look."""
        return sum(self._lag.values())
