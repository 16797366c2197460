"""Group commit: transactions waiting behind a running one are applied as one, in order.

A stand-in ``apply`` records what it is given and is held on an event, so the grouping is
deterministic; the oracle is the batches themselves, concatenated by hand per partition.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speed_layer.committer import MAX_IN_FLIGHT, Committer, joined
from speed_layer.event_block import COLUMNS, EventBlock
from speed_layer.store import AppliedBatch, PartitionBatch


def block(offsets: list[int]) -> EventBlock:
    """A block whose every column holds the offsets (enough to check the order kept)."""
    return EventBlock({name: list(offsets) for name in COLUMNS})


def batch(partition: int, start: int | None, stop: int, ts: int = 0) -> PartitionBatch:
    first = 0 if start is None else start
    return PartitionBatch(partition, start, stop, block(list(range(first, stop))), 1, ts)


class HeldStore:
    """Records each transaction; the first one waits until released."""

    def __init__(self) -> None:
        self.applied: list[list[PartitionBatch]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail_with: Exception | None = None

    def apply(self, batches: list[PartitionBatch]) -> AppliedBatch:
        self.started.set()
        self.release.wait(10)
        self.applied.append(batches)
        if self.fail_with is not None:
            raise self.fail_with
        return AppliedBatch(sum(len(b.rows) for b in batches), 0, sum(b.rejected for b in batches))


def test_waiting_transactions_are_joined_and_counted_once() -> None:
    store = HeldStore()
    committer = Committer(store.apply)
    committer.submit([batch(0, None, 3)])
    assert store.started.wait(10)  # running, held
    committer.submit([batch(0, 3, 5), batch(1, 10, 12)])
    committer.submit([batch(1, 12, 13, ts=9), batch(0, 5, 6)])
    store.release.set()
    outcomes = []
    while (pending := committer.take()) is not None:
        outcomes.append(pending.future.result())
    committer.close()
    # the first alone, the two waiting behind it as one; the events counted once, by the oldest
    assert [
        sorted((b.partition, b.expected_offset, b.next_offset) for b in t) for t in store.applied
    ] == [
        [(0, None, 3)],
        [(0, 3, 6), (1, 10, 13)],
    ]
    second = {b.partition: b for b in store.applied[1]}
    assert second[0].rows.column("kafka_offset") == [3, 4, 5]
    assert second[1].rows.column("kafka_offset") == [10, 11, 12]
    assert (second[1].rejected, second[1].max_kafka_ts) == (2, 9)
    assert [o.events for o in outcomes] == [3, 6, 0]


def test_a_failed_group_fails_every_transaction_in_it() -> None:
    store = HeldStore()
    committer = Committer(store.apply)
    committer.submit([batch(0, None, 3)])
    assert store.started.wait(10)
    store.fail_with = RuntimeError("refused")
    committer.submit([batch(0, 3, 5)])
    committer.submit([batch(0, 5, 6)])
    store.release.set()
    failures = []
    while (pending := committer.take()) is not None:
        failures.append(pending.future.exception())
    committer.close()
    # the first failed too (the failure was set before it returned); no transaction succeeded
    assert all(isinstance(f, RuntimeError) for f in failures) and len(failures) == 3


def test_a_group_stops_at_its_size() -> None:
    store = HeldStore()
    committer = Committer(store.apply, max_group_events=4)
    committer.submit([batch(0, None, 1)])
    assert store.started.wait(10)
    for start in range(1, 1 + 3 * (MAX_IN_FLIGHT - 1), 3):
        committer.submit([batch(0, start, start + 3)])
    store.release.set()
    while committer.take() is not None:
        pass
    committer.close()
    # one alone, then each waiting transaction of 3 alone: two would pass 4 events
    assert [len(t[0].rows) for t in store.applied] == [1] + [3] * (MAX_IN_FLIGHT - 1)


def test_batches_that_do_not_follow_each_other_are_not_joined() -> None:
    with pytest.raises(ValueError, match="does not follow"):
        joined([batch(0, 0, 3), batch(0, 4, 6)])


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4), st.integers(0, 3)), max_size=12))
def test_joined_batches_hold_each_partitions_records_in_log_order(
    runs: list[tuple[int, int, int]],
) -> None:
    cursors: dict[int, int] = {}
    batches = []
    for partition, size, rejected in runs:
        start = cursors.get(partition, 0)
        batches.append(
            PartitionBatch(
                partition,
                start,
                start + size,
                block(list(range(start, start + size))),
                rejected,
                start,
            )
        )
        cursors[partition] = start + size
    expected: dict[int, dict[str, Any]] = {}
    for b in batches:  # by hand: offsets in order, counts summed, the first start, the last end
        e = expected.setdefault(
            b.partition, {"start": b.expected_offset, "offsets": [], "rejected": 0}
        )
        e["offsets"] += list(range(b.expected_offset or 0, b.next_offset))
        e["rejected"] += b.rejected
        e["stop"] = b.next_offset
    got = {b.partition: b for b in joined(batches)}
    assert set(got) == set(expected)
    for partition, e in expected.items():
        b = got[partition]
        assert (b.expected_offset, b.next_offset, b.rejected) == (
            e["start"],
            e["stop"],
            e["rejected"],
        )
        assert b.rows.column("kafka_offset") == e["offsets"]
