"""Dedup state is evicted by record time, never by the wall clock.

A speed store catching up on a backlog whose Kafka timestamps are days old must keep exactly
the TransactionIDs within the horizon D of the record time it has reached — the lowest, over
partitions, of the newest timestamp applied — whatever the wall clock says; and a copy arriving
within D must still be found a duplicate after an eviction. Also the rule's chain semantics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from lambda_contracts.db import make_engine
from speed_layer.store import SpeedStore
from tests.support.dedup_backlog import (
    BUCKET_MS,
    DAY_MS,
    DEDUP_MS,
    STEP_MS,
    TOPIC,
    apply_log,
    backlog,
    record,
    remembered,
)
from tests.support.oracle import kept_rows


@pytest.fixture
def store() -> Iterator[SpeedStore]:
    engine = make_engine("sqlite://")
    yield SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS)
    engine.dispose()


@pytest.mark.parametrize("wall_clock_offset_ms", [0, 365 * DAY_MS, -30 * DAY_MS])
def test_eviction_keeps_the_ids_within_the_horizon_of_the_record_time(
    store: SpeedStore, monkeypatch: pytest.MonkeyPatch, wall_clock_offset_ms: int
) -> None:
    now_ms = int(time.time() * 1000)
    monkeypatch.setattr(time, "time", lambda: (now_ms + wall_clock_offset_ms) / 1000)
    # Two partitions of a days-old backlog; partition 1 lags partition 0 by ten minutes.
    logs = {0: backlog(0, now_ms - 3 * DAY_MS, 60), 1: backlog(1, now_ms - 3 * DAY_MS, 30)}
    apply_log(store, 0, logs[0], None)
    apply_log(store, 1, logs[1], None)
    record_time = min(log[-1]["kafka_ts"] for log in logs.values())
    assert store.record_time() == record_time

    evicted = store.expire_dedup()

    rows = [r for log in logs.values() for r in log]
    expected = {r["transaction_id"] for r in rows if r["kafka_ts"] >= record_time - DEDUP_MS}
    assert remembered(store) == expected
    assert evicted == len(rows) - len(expected) > 0  # state is bounded, not kept forever
    # The lagging partition keeps everything it may still need: its newest ids all survive.
    assert {r["transaction_id"] for r in logs[1][-4:]} <= expected


def test_a_copy_within_the_horizon_is_a_duplicate_after_an_eviction(store: SpeedStore) -> None:
    old = int(time.time() * 1000) - 5 * DAY_MS
    log = backlog(0, old, 20)
    apply_log(store, 0, log, None)
    store.expire_dedup()
    newest = log[-1]["kafka_ts"]
    # A resend of the id kept 80 s before the newest record, 10 s after it: 90 s ≤ D.
    kept_earlier = next(r for r in log if r["kafka_ts"] == newest - 4 * STEP_MS)
    resend = record(kept_earlier["transaction_id"], 0, 20, newest + 10_000, cents=999)
    assert apply_log(store, 0, [resend], 20) == 1
    assert kept_rows([*log, resend], DEDUP_MS) == log  # the oracle agrees


def test_chain_semantics_compare_with_the_last_kept_copy(store: SpeedStore) -> None:
    """Copies at 0, 1.5·D and 2·D: the second is kept (more than D after the first), the third
    is a duplicate of the second although it is 2·D after the first."""
    copies = [record("t", 0, i, 1_000_000 + ts) for i, ts in enumerate([0, 135_000, 180_000])]
    assert kept_rows(copies, DEDUP_MS) == copies[:2]
    assert apply_log(store, 0, copies[:2], None) == 0
    assert apply_log(store, 0, copies[2:], 2) == 1
