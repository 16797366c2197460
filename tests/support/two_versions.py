"""Two batch versions and the speed rows over one random event set, served together, with the
plain-Python oracle of an answer on either version.

An answer on version V with horizon H = V's batch events (ingest < H) + every event with
ingest >= H. The versions differ (v2 has a later horizon and corrects some events below it
away), so an answer that took a part of the other version, or speed rows of the other horizon,
is off.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from sqlalchemy import insert

from lambda_contracts.db import make_engine
from lambda_contracts.layout import BatchPointer, Layout
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import view_tables
from lambda_contracts.views import ACCOUNT_MINUTE, VIEWS
from serving.batch_cache import BatchCache
from serving.batch_store import BatchStore
from serving.queries import QueryService
from serving.speed_store import SpeedReader
from tests.support.versions import put_version

BUCKET = 60_000
DAY = 86_400_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % DAY
ACCOUNTS = [f"acct-{i}" for i in range(6)]
H1 = T0 + 30 * BUCKET
H2 = T0 + 70 * BUCKET


@dataclass(frozen=True)
class Event:
    tid: int
    account: str
    created: int
    ingest: int
    cents: int


def make_events(seed: int = 7, n: int = 600) -> list[Event]:
    rng = random.Random(seed)
    out = []
    for tid in range(n):
        ingest = T0 + rng.randrange(100 * BUCKET)
        created = ingest - rng.choice([0, 0, 0, rng.randrange(3 * DAY)])  # some arrive late
        out.append(Event(tid, rng.choice(ACCOUNTS), created, ingest, rng.randrange(1, 100_000)))
    return out


EVENTS = make_events()
# V2 "corrects" every 7th event below its horizon away (as a later dedup decision would).
BATCH = {
    "v1": [e for e in EVENTS if e.ingest < H1],
    "v2": [e for e in EVENTS if e.ingest < H2 and e.tid % 7 != 0],
}
HORIZON = {"v1": H1, "v2": H2}


def oracle(version: str, start: int, end: int, account: str | None) -> list[Event]:
    """The events an answer on ``version`` covers in [start, end) (minutes starting inside)."""
    chosen = BATCH[version] + [e for e in EVENTS if e.ingest >= HORIZON[version]]
    return [
        e
        for e in chosen
        if start <= e.created - e.created % 60_000 < end and account in (None, e.account)
    ]


def summary_of(events: list[Event]) -> dict[str, int] | None:
    if not events:
        return None
    cents = [e.cents for e in events]
    return {"count": len(cents), "sum": sum(cents), "min": min(cents), "max": max(cents)}


def series_of(events: list[Event], size: int) -> list[tuple[int, dict[str, int]]]:
    by_window: dict[int, list[Event]] = {}
    for e in events:
        minute = e.created - e.created % 60_000
        by_window.setdefault(minute - minute % size, []).append(e)
    return [(w, summary_of(es)) for w, es in sorted(by_window.items())]  # type: ignore[misc]


def aggregate(events: list[Event], view, with_bucket: bool) -> dict[tuple, list[int]]:  # type: ignore[no-untyped-def]
    out: dict[tuple, list[int]] = {}
    for e in events:
        key = (e.account,) if view is ACCOUNT_MINUTE else ()
        key += (e.created - e.created % 60_000,)
        if with_bucket:
            key += (e.ingest - e.ingest % BUCKET,)
        m = out.setdefault(key, [0, 0, e.cents, e.cents])
        m[0] += 1
        m[1] += e.cents
        m[2] = min(m[2], e.cents)
        m[3] = max(m[3], e.cents)
    return out


def write_version(layout: Layout, version: str) -> None:
    tables = {}
    for view in VIEWS:
        rows = aggregate(BATCH[version], view, with_bucket=False)
        columns: dict[str, list] = {c: [] for c in (*view.key_columns, *view.measure_names)}
        for key, measures in rows.items():
            for c, v in zip(
                (*view.key_columns, *view.measure_names), (*key, *measures), strict=True
            ):
                columns[c].append(v)
        tables[view.name] = pa.table(columns)
    put_version(layout, version, tables, {"version": version, "horizon_ms": HORIZON[version]})


def serving_over(settings: Settings, layout: Layout, versions: Iterable[str]) -> QueryService:
    """Serving over these batch versions (written to ``layout``) and the speed rows of every
    event, as the speed layer would hold them before any expiry."""
    for version in versions:
        write_version(layout, version)
    engine = make_engine(settings.speed_store_url)
    with engine.begin() as conn:
        for view in VIEWS:
            cols = (*view.key_columns, "ingest_bucket", *view.measure_names)
            rows = aggregate(EVENTS, view, with_bucket=True)
            conn.execute(
                insert(view_tables[view.name]),
                [dict(zip(cols, (*k, *m), strict=True)) for k, m in rows.items()],
            )
    return QueryService(
        BatchStore(layout), SpeedReader(engine, "t"), partitions=1, cache=BatchCache(10_000)
    )


RANGES = [(T0 - 3 * DAY, T0 + DAY), (T0, T0 + 50 * BUCKET), (H1 - 10 * BUCKET, H2 + 600_000)]


@contextmanager
def served_versions(data_dir: Path) -> Iterator[tuple[Settings, QueryService]]:
    """Settings on ``data_dir`` and serving over both versions and every event's speed rows
    (CURRENT not set yet: :func:`publish` it)."""
    settings = Settings(data_dir=data_dir, partitions=1, bucket_ms=BUCKET)
    queries = serving_over(settings, Layout.of(settings), BATCH)
    try:
        yield settings, queries
    finally:
        queries.speed.engine.dispose()


def publish(layout: Layout, version: str, pinned: bool = False) -> None:
    """Move CURRENT as a publish (or, pinned, a rollback) does: by compare-and-swap."""
    pointer = BatchPointer(version, HORIZON[version], int(time.time() * 1000), pinned)
    assert layout.swap_current(pointer, layout.read_current_versioned()[1])


def switched(queries: QueryService, version: str, timeout_s: float = 30) -> None:
    """Until the service answers from ``version`` (it loads a new one in the background)."""
    deadline = time.monotonic() + timeout_s
    while (pointer := queries.snapshot().pointer) is None or pointer.version != version:
        assert time.monotonic() < deadline, f"never switched to {version}"
        time.sleep(0.01)
