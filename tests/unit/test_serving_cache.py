"""The batch-part cache never changes an answer: it follows CURRENT, never mixes versions, and
never completes a batch part with speed rows of another horizon.

Real DuckDB batch store over hand-written Parquet versions, real SQLite speed store, real
query service; the oracle sums the raw events in plain Python: an answer on version V with
horizon H = V's batch events (ingest < H) + every event with ingest >= H. The two versions
differ (V2 has a later horizon and corrects some events below it away), so an answer that
took a part of the other version, or speed rows of the other horizon, is off.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lambda_contracts.layout import BatchPointer, Layout
from lambda_contracts.settings import Settings
from lambda_contracts.views import VIEWS
from serving.batch_cache import BatchCache, BatchPart, MixedSnapshotError
from serving.main import create_app
from serving.queries import Granularity, QueryService
from serving.row_query import RowQuery
from tests.support.two_versions import (
    ACCOUNTS,
    BATCH,
    DAY,
    H1,
    H2,
    HORIZON,
    RANGES,
    T0,
    oracle,
    publish,
    series_of,
    served_versions,
    summary_of,
    switched,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Settings, QueryService]]:
    with served_versions(tmp_path) as served:
        yield served


def check_answers(queries: QueryService, version: str) -> None:
    """Every range, account and granularity answers as the oracle says for ``version``."""
    for start, end in RANGES:
        for account in [None, *ACCOUNTS[:3]]:
            snap, value = queries.consistent(
                lambda s, a=account, r=(start, end): queries.summary(s, *r, a)
            )
            assert snap.pointer is not None and snap.pointer.version == version
            assert value == summary_of(oracle(version, start, end, account)), (start, account)
            for granularity in Granularity:
                snap, points = queries.consistent(
                    lambda s, g=granularity, a=account, r=(start, end): queries.series(s, *r, g, a)
                )
                assert snap.pointer is not None and snap.pointer.version == version
                want = series_of(oracle(version, start, end, account), granularity.ms)
                assert points == want, (start, account, granularity)


def test_answers_follow_current_and_never_reuse_a_part_of_another_version(store) -> None:  # type: ignore[no-untyped-def]
    settings, queries = store
    layout = Layout.of(settings)
    assert oracle("v1", *RANGES[0], None) != oracle("v2", *RANGES[0], None)  # distinguishable
    publish(layout, "v1")
    check_answers(queries, "v1")
    hits = queries.cache.hits
    check_answers(queries, "v1")  # the second round is answered from the cache
    assert queries.cache.hits > hits and queries.cache.generation == ("v1", H1)
    publish(layout, "v2")
    switched(queries, "v2")
    check_answers(queries, "v2")
    assert queries.cache.generation == ("v2", H2)
    publish(layout, "v1", pinned=True)  # a rollback: back to v1's parts, recomputed
    switched(queries, "v1")
    check_answers(queries, "v1")
    check_answers(queries, "v1")


def test_a_publish_while_answering_keeps_the_answer_exact(store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """CURRENT moves to v2 after the batch part of v1 was taken, before its speed rows are
    read: with v1's speed rows all there, the answer on v1 stands (exact). When expiry also
    raised the speed floor past v1's horizon meanwhile, the answer is recomputed on v2 whole,
    and v1's part is not served under v2 afterwards."""
    from batch_layer.retention import raise_speed_floor

    settings, queries = store
    layout = Layout.of(settings)
    publish(layout, "v1")
    start, end = RANGES[2]
    queries.consistent(lambda s: queries.summary(s, start, end, ACCOUNTS[0]))  # v1 part cached
    read_rows = queries.speed.rows
    horizons = []

    def publish_then_read(view, horizon_ms, *args, **kwargs):  # type: ignore[no-untyped-def]
        horizons.append(horizon_ms)
        if len(horizons) == 1:
            publish(layout, "v2")
        return read_rows(view, horizon_ms, *args, **kwargs)

    monkeypatch.setattr(queries.speed, "rows", publish_then_read)
    snap, value = queries.consistent(lambda s: queries.summary(s, start, end, ACCOUNTS[0]))
    assert horizons == [H1]
    assert snap.pointer is not None and snap.pointer.version == "v1"
    assert value == summary_of(oracle("v1", start, end, ACCOUNTS[0]))
    switched(queries, "v2")
    publish(layout, "v1", pinned=True)
    switched(queries, "v1")  # v1 is still loaded: at once
    horizons.clear()

    def publish_expire_then_read(view, horizon_ms, *args, **kwargs):  # type: ignore[no-untyped-def]
        horizons.append(horizon_ms)
        if len(horizons) == 1:
            publish(layout, "v2")
            raise_speed_floor(layout, lambda: H2)  # what expiry does before deleting rows
        return read_rows(view, horizon_ms, *args, **kwargs)

    monkeypatch.setattr(queries.speed, "rows", publish_expire_then_read)
    snap, value = queries.consistent(lambda s: queries.summary(s, start, end, ACCOUNTS[0]))
    assert horizons == [H1, H2]
    assert snap.pointer is not None and snap.pointer.version == "v2"
    assert value == summary_of(oracle("v2", start, end, ACCOUNTS[0]))
    assert snap.batch_events == len(
        [e for e in oracle("v2", start, end, ACCOUNTS[0]) if e.ingest < H2]
    )
    monkeypatch.undo()
    check_answers(queries, "v2")


def test_a_part_of_another_horizon_is_refused(store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The guard behind the cache: even a (buggy) cache handing out a part of another batch
    identity cannot get it merged with this snapshot's speed rows."""
    settings, queries = store
    publish(Layout.of(settings), "v2")
    stale = BatchPart("v2", H1, ((((), (1, 1, 1, 1))),))
    monkeypatch.setattr(queries.cache, "get", lambda pointer, query: stale)
    with pytest.raises(MixedSnapshotError):
        queries.consistent(lambda s: queries.summary(s, *RANGES[0]))


def pointer(version: str, horizon: int) -> BatchPointer:
    return BatchPointer(version, horizon, 0)


def part(version: str, horizon: int, rows: int = 1) -> BatchPart:
    return BatchPart(version, horizon, tuple(((i,), (1, 1, 1, 1)) for i in range(rows)))


def test_cache_holds_one_generation_and_drops_late_parts() -> None:
    cache = BatchCache(max_rows=100)
    v1 = pointer("v1", 1000)
    cache.switch(v1)
    cache.put("q", part("v1", 1000))
    assert cache.get(v1, "q") == part("v1", 1000)
    assert cache.get(pointer("v1", 2000), "q") is None  # same version, other horizon
    cache.switch(pointer("v2", 2000))
    assert len(cache) == 0 and cache.get(v1, "q") is None
    cache.put("q", part("v1", 1000))  # computed on v1, arriving after the switch
    assert len(cache) == 0 and cache.get(pointer("v2", 2000), "q") is None
    cache.switch(None)  # no version published (e.g. a wiped data directory)
    assert cache.generation is None and len(cache) == 0


def test_cache_evicts_least_recently_used_within_its_row_budget() -> None:
    cache = BatchCache(max_rows=10)
    v = pointer("v", 1)
    cache.switch(v)
    for q in "abc":
        cache.put(q, part("v", 1, rows=4))  # 12 rows > 10: "a" goes
    assert cache.get(v, "a") is None and cache.get(v, "b") is not None
    cache.put("d", part("v", 1, rows=4))  # "c" is now the least recently used
    assert cache.get(v, "c") is None and cache.get(v, "b") is not None
    cache.put("huge", part("v", 1, rows=11))  # never fits: not kept, nothing evicted for it
    assert cache.get(v, "huge") is None and cache.get(v, "d") is not None
    off = BatchCache(max_rows=0)
    off.switch(v)
    off.put("a", part("v", 1))
    assert off.get(v, "a") is None


def test_http_answers_carry_the_version_they_were_computed_on(store) -> None:  # type: ignore[no-untyped-def]
    settings, _ = store
    layout = Layout.of(settings)
    publish(layout, "v1")
    start, end = RANGES[0]
    app = create_app(settings)
    with TestClient(app) as client:
        app.state.end_offsets.get = lambda: None  # no broker in unit tests
        for version in ("v1", "v2", "v1"):
            publish(layout, version)
            switched(app.state.queries, version)
            for _ in range(2):  # computed, then from the cache
                body = client.get(
                    f"/v1/accounts/{ACCOUNTS[1]}/summary", params={"start": start, "end": end}
                ).json()
                want = summary_of(oracle(version, start, end, ACCOUNTS[1]))
                assert want is not None
                assert body["meta"]["batch_version"] == version
                assert body["meta"]["batch_horizon_ms"] == HORIZON[version]
                assert (body["count"], body["sum"]) == (
                    want["count"],
                    f"{Decimal(want['sum']).scaleb(-2):.2f}",
                )
                series = client.get(
                    f"/v1/accounts/{ACCOUNTS[1]}/series",
                    params={"start": start, "end": end, "granularity": "hour"},
                ).json()
                assert series["meta"]["batch_version"] == version
                assert [(p["window_start_ms"], p["count"]) for p in series["points"]] == [
                    (w, v["count"])
                    for w, v in series_of(oracle(version, start, end, ACCOUNTS[1]), 3_600_000)
                ]


def test_keyed_arrays_answer_as_duckdb_sql_does(store) -> None:  # type: ignore[no-untyped-def]
    """One key's lookups (numpy slices) against the same view through DuckDB SQL, on ranges
    that start and end on, between and beyond the rows, at every roll-up."""
    _, queries = store
    batch = queries.batch
    rng = random.Random(3)
    for version in BATCH:
        batch.ensure_loaded(version)
        for view in VIEWS:
            keys = [{}] if not view.dimensions else [{"source_account_id": a} for a in ACCOUNTS]
            keys += [{"source_account_id": "nobody"}] if view.dimensions else []
            for filters in keys:
                for _ in range(25):
                    start = T0 - 4 * DAY + rng.randrange(6 * DAY) // 60_000 * 60_000
                    end = (
                        start
                        + rng.choice([60_000, 3_600_000, DAY, 5 * DAY])
                        + rng.choice([0, 1, 59_999])
                    )
                    for group_by, window in (
                        ((), None),
                        (("window_start",), None),
                        (("window_start",), 3_600_000),
                        (("window_start",), DAY),
                    ):
                        q = RowQuery.of(view, start, end, group_by, filters, window)
                        assert batch.rows(version, q) == sorted(batch.sql_rows(version, q)), q


def test_a_new_version_loads_off_the_request_path(store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """While v2 loads (held here until released), answers come from v1 at once and are exact
    for v1; the cache of v2 starts warm with the parts of the queries asked before the switch.
    Once the speed floor passes v1's horizon, v1 is no longer exact: a request waits for v2."""
    import threading

    from batch_layer.retention import raise_speed_floor

    settings, queries = store
    layout = Layout.of(settings)
    publish(layout, "v1")
    check_answers(queries, "v1")
    release = threading.Event()
    real_load = queries.batch.ensure_loaded

    def held_load(version: str) -> None:
        if version == "v2":
            assert release.wait(30)
        real_load(version)

    monkeypatch.setattr(queries.batch, "ensure_loaded", held_load)
    publish(layout, "v2")
    started = time.monotonic()
    check_answers(queries, "v1")  # v2 is not loaded: v1 still answers, exactly
    assert time.monotonic() - started < 20  # nothing waited for the held load
    assert not queries.batch.is_loaded("v2")
    hot = len(queries.cache)
    release.set()
    switched(queries, "v2")
    assert len(queries.cache) == hot > 0  # warmed: every part of v1's cache recomputed on v2
    hits = queries.cache.hits
    check_answers(queries, "v2")
    assert queries.cache.hits > hits

    publish(layout, "v1", pinned=True)
    switched(queries, "v1")
    queries.batch._tables.pop("v2")  # v2 unloaded (as if evicted): it loads again, held
    release.clear()
    publish(layout, "v2")
    raise_speed_floor(layout, lambda: H2)  # expiry is under way: v1 undercounts from now on
    answered: list[str] = []

    def ask() -> None:
        snap, _ = queries.consistent(lambda s: queries.summary(s, *RANGES[0]))
        answered.append(snap.pointer.version)  # type: ignore[union-attr]

    asker = threading.Thread(target=ask)
    asker.start()
    asker.join(0.5)
    assert asker.is_alive() and answered == []  # waiting for v2, not answering from v1
    release.set()
    asker.join(30)
    assert answered == ["v2"]
    check_answers(queries, "v2")
