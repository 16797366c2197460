"""The speed watermark: the time up to which EVERY partition's records are counted by speed.

A maximum over partitions would hide a stalled partition behind busy ones; the answer must
hold for all of them, so it is the minimum over the topic's partitions of how far each one
is counted:
- a partition whose stored offset has reached its end offset is counted through the moment
  the end offset was read (every record appended before then is counted);
- otherwise through its ``max_kafka_ts``, the newest broker timestamp counted (LogAppendTime
  grows with the offset, and the store counts a partition in offset order);
- a partition with records but no stored state has counted nothing: the watermark is unknown
  (None). Without end offsets (Kafka unreachable) no partition can be known caught up, so the
  stored timestamps alone decide — a lower bound, never an overstatement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EndOffsetsReading:
    """The topic's end offsets per partition and when they were read (epoch ms)."""

    offsets: dict[int, int]
    read_at_ms: int


def speed_watermark_ms(
    states: Iterable[Mapping[str, Any]], partitions: int, ends: EndOffsetsReading | None
) -> int | None:
    """Min over partitions 0..partitions-1 of how far each is counted (see module doc)."""
    by_partition = {s["kafka_partition"]: s for s in states}
    through: list[int] = []
    for partition in range(partitions):
        state = by_partition.get(partition)
        stored = state["next_offset"] if state else 0
        end = ends.offsets.get(partition) if ends else None
        if ends is not None and end is not None and stored >= end:
            through.append(ends.read_at_ms)
        elif state is None:
            return None
        else:
            through.append(state["max_kafka_ts"])
    return min(through, default=None)
