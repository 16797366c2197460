"""How long a serving worker's request thread can wait while a new batch version loads.

    .venv/bin/python -m bench.serving_switch_stall [--accounts 10000] [--minutes 100] [--rounds 3]

A publish makes each serving worker load the new version (its Parquet into DuckDB, then sorted
numpy arrays) and warm the batch-part cache, in a loader thread beside the event loop. Any
stretch in which the loader holds the GIL is a stretch in which no request of that worker
moves: it shows as latency at a publish. This writes a version of ``--accounts`` by
``--minutes`` account-minute rows (about a 1M-event increment by default) the way the Spark job
lays it out, then loads and warms it ``--rounds`` times through :class:`VersionSwitch` while a
probe thread sleeps 1 ms at a time and records how late it wakes. Prints the load time and the
probe's worst and p99 lateness, and writes ``bench/results/<report>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.common import write_report
from lambda_contracts.layout import BatchPointer, Layout
from lambda_contracts.settings import Settings
from lambda_contracts.views import ACCOUNT_MINUTE, VIEWS
from serving.batch_cache import BatchCache, BatchPart
from serving.batch_store import BatchStore
from serving.main import freeze_startup_heap
from serving.row_query import RowQuery
from serving.version_switch import VersionSwitch
from tests.support.versions import put_version

MINUTE = 60_000


def write_version(layout: Layout, version: str, accounts: int, minutes: int) -> int:
    """A version with one row per account and minute (and per minute globally); its events."""
    rng = np.random.default_rng(7)
    n = accounts * minutes
    counts = rng.integers(1, 3, n)
    sums = counts * rng.integers(100, 100_000, n)
    tables = {}
    for view in VIEWS:
        if view.dimensions:
            ids = np.repeat(np.arange(100_000, 100_000 + accounts), minutes).astype(str)
            starts = np.tile(np.arange(minutes) * MINUTE, accounts)
            columns = {view.dimensions[0]: ids, "window_start": starts}
            measures = (counts, sums, sums // counts, sums // counts)
        else:
            starts = np.arange(minutes) * MINUTE
            per = counts.reshape(accounts, minutes).sum(axis=0)
            total = sums.reshape(accounts, minutes).sum(axis=0)
            columns = {"window_start": starts}
            measures = (per, total, np.full(minutes, 100), np.full(minutes, 99_999))
        named = dict(zip(view.measure_names, measures, strict=True))
        tables[view.name] = pa.table(columns | named)
    events = int(counts.sum())
    manifest = {
        "version": version,
        "horizon_ms": minutes * MINUTE,
        "bucket_ms": MINUTE,
        "input_records": events,
        "records_read": events,
        "replays_removed": 0,
        "duplicates_removed": 0,
        "events": events,
    }
    put_version(layout, version, tables, manifest)
    return events


class Probe(threading.Thread):
    """Sleeps 1 ms at a time; records how much later than asked it woke (GIL or CPU)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.late_ms: list[float] = []

    def run(self) -> None:
        while not self.stop.is_set():
            asked = time.perf_counter()
            time.sleep(0.001)
            self.late_ms.append((time.perf_counter() - asked) * 1000 - 1)


def measure(accounts: int, minutes: int, rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="switch-stall-") as tmp:
        layout = Layout.of(Settings(data_dir=Path(tmp), bucket_ms=MINUTE))
        figures: list[dict[str, float]] = []
        events = 0
        for round_ in range(rounds):
            version = f"v20260101T0000{round_:02d}Z-bench"
            events = write_version(layout, version, accounts, minutes)
            cache = BatchCache(500_000)
            switch = VersionSwitch(layout, BatchStore(layout), cache)
            # The hottest queries of the worker: one summary per account, as under load.
            old = BatchPointer(f"v19990101T000000Z-old-{round_}", 0, 0)
            cache.switch(old)
            for a in range(accounts):
                query = RowQuery.of(
                    ACCOUNT_MINUTE, 0, 1 << 62, (), {"source_account_id": str(100_000 + a)}
                )
                cache.put(query, BatchPart(old.version, old.horizon_ms, ((), (1, 1, 1, 1))))
            pointer = BatchPointer(version, minutes * MINUTE, 0)
            freeze_startup_heap()  # as a worker does once it has started
            probe = Probe()
            probe.start()
            time.sleep(0.2)
            started = time.perf_counter()
            load = switch._start(pointer)
            load.done.wait()
            took = time.perf_counter() - started
            time.sleep(0.2)
            probe.stop.set()
            probe.join()
            late = np.array(probe.late_ms)
            cache.switch(pointer)  # the staged parts become the cache: how many were warmed
            figures.append(
                {
                    "load_s": round(took, 3),
                    "probe_worst_ms": round(float(late.max()), 1),
                    "probe_p99_ms": round(float(np.percentile(late, 99)), 1),
                    "warmed": len(cache),
                }
            )
    return {"accounts": accounts, "minutes": minutes, "events": events, "rounds": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--report", default="serving_switch_stall")
    args = parser.parse_args()
    figures = measure(args.accounts, args.minutes, args.rounds)
    for r in figures["rounds"]:  # type: ignore[attr-defined]
        print(
            f"load+warm {r['load_s']:6.2f} s   probe worst {r['probe_worst_ms']:6.1f} ms   "
            f"p99 {r['probe_p99_ms']:5.1f} ms   warmed {r['warmed']}"
        )
    print(f"report: {write_report(args.report, figures)}")


if __name__ == "__main__":
    main()
