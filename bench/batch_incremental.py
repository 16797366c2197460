"""Incremental batch runs: cost with history, and over 30 daily increments.

    .venv/bin/python -m bench.batch_incremental [--history 10000000] [--increment 100000]
        [--days 30] [--daily 300000]

1. **Growth.** A history of ``--history`` events over 2 days is absorbed (a full run,
   validated and published); then a run adds ``--increment`` new events. Its time is divided
   by that of a run of the same new events with no history (a fresh landing zone).
2. **Cost over time.** ``--days`` daily increments of ``--daily`` events each (2 % duplicates,
   1 % late by up to 3 days), each absorbed by a run and published: the last run's time
   divided by the first's. An uncounted run of the same size goes first (a cold first
   spark-submit is slower and would flatter the ratio).

Every run is a real ``spark-submit`` (JVM start-up included, ``local[2]``) of the batch job,
validated (its counts reconcile with every view) before it is published. At the end a full
rebuild of the last horizon is compared row for row with the last incremental version.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from batch_layer.catalog import read_manifest
from batch_layer.pipeline import recompute
from batch_layer.validate import validate_version
from batch_layer.versions import new_version_id, publish
from bench.common import Timer, write_report
from bench.synthetic import write_landing
from lambda_contracts.batch_files import view_files
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.views import VIEWS

BUCKET_MS = 300_000
DAY_MS = 86_400_000
START = 1_795_000_000_000 - 1_795_000_000_000 % DAY_MS  # a day boundary


def absorb(settings: Settings, horizon: int, name: str, full: bool = False) -> dict[str, Any]:
    """One batch run (spark-submit), validated and published; its timing and increment."""
    layout = Layout.of(settings)
    version = new_version_id(name)
    with Timer() as run:
        recompute(settings, horizon, version, name, full=full)
    validate_version(layout, version)
    publish(layout, version, rebuild=full)
    manifest = read_manifest(layout, version)
    increment = manifest.increment
    assert increment is not None  # the job always writes one
    return {
        "run": name,
        "version": version,
        "mode": manifest.mode,
        "spark_s": round(run.seconds, 2),
        "new_events": increment.input_records,
        "events_total": manifest.events,
        "days_touched": increment.days_touched,
        "hours_touched": increment.hours_touched,
        "partitions_touched": increment.partitions_touched,
        "partitions": increment.partitions,
        "index_files": len(manifest.dedup_index_files),
        "steps_s": manifest.steps_s,
    }


def identical(layout: Layout, a: str, b: str) -> bool:
    """Two versions' views, row for row (EXCEPT ALL both ways)."""
    con = duckdb.connect()
    try:
        for view in VIEWS:
            files = [
                [layout.store.path(k) for k in view_files(layout, v, view.name)] for v in (a, b)
            ]
            cols = ", ".join([*view.key_columns, *view.measure_names])
            for left, right in (files, files[::-1]):
                (extra,) = con.execute(
                    f"SELECT count(*) FROM ((SELECT {cols} FROM read_parquet(?)) "
                    f"EXCEPT ALL (SELECT {cols} FROM read_parquet(?)))",
                    [left, right],
                ).fetchone()
                if extra:
                    return False
    finally:
        con.close()
    return True


def growth(tmp: Path, history: int, increment: int) -> dict[str, Any]:
    """The run adding ``increment`` events to ``history``, against the same events alone."""
    new_start = START + 2 * DAY_MS
    new_horizon = new_start + 3_600_000 + BUCKET_MS
    runs = {}
    for label, with_history in (("with_history", True), ("no_history", False)):
        settings = Settings(data_dir=tmp / label, bucket_ms=BUCKET_MS)
        layout = Layout.of(settings)
        offsets: dict[int, int] = {}
        if with_history:
            offsets = write_landing(
                layout, history, START, 2 * DAY_MS, settings.partitions, BUCKET_MS
            )
            runs["history"] = absorb(settings, new_start, "history")
        write_landing(
            layout, increment, new_start, 3_600_000, settings.partitions, BUCKET_MS,
            id_offset=10**10, offset_base=offsets, seed=11,
        )  # fmt: skip
        runs[label] = absorb(settings, new_horizon, label)
        print(runs)
    return {
        "history_events": history,
        "new_events": increment,
        "runs": runs,
        "ratio": round(runs["with_history"]["spark_s"] / runs["no_history"]["spark_s"], 2),
    }


def warm_up(tmp: Path, events: int) -> None:
    """One run of the same size on a zone of its own, not counted: the first spark-submit of
    a session reads Spark's jars from a cold disk and runs uncompiled code, and would make
    the first day look slow (and every later day's ratio to it look better than it is)."""
    settings = Settings(data_dir=tmp / "warm-up", bucket_ms=BUCKET_MS)
    layout = Layout.of(settings)
    write_landing(layout, events, START, DAY_MS, settings.partitions, BUCKET_MS, file_rows=50_000)
    print("warm-up", absorb(settings, START + DAY_MS, "warm-up"))


def daily(tmp: Path, days: int, per_day: int) -> dict[str, Any]:
    """``days`` daily increments; then a full rebuild compared with the last version."""
    settings = Settings(data_dir=tmp / "daily", bucket_ms=BUCKET_MS)
    layout = Layout.of(settings)
    offsets: dict[int, int] = {}
    runs = []
    warm_up(tmp, per_day)
    for day in range(days):
        offsets = write_landing(
            layout, per_day, START + day * DAY_MS, DAY_MS, settings.partitions, BUCKET_MS,
            id_offset=day * per_day * 2, offset_base=offsets, seed=100 + day, file_rows=50_000,
            late_ms=3 * DAY_MS,
        )  # fmt: skip
        runs.append(absorb(settings, START + (day + 1) * DAY_MS, f"day{day + 1}"))
        print(runs[-1])
    rebuild = absorb(settings, START + days * DAY_MS, "rebuild", full=True)
    print(rebuild)
    return {
        "days": days,
        "events_per_day": per_day,
        "runs": runs,
        "ratio_last_to_first": round(runs[-1]["spark_s"] / runs[0]["spark_s"], 2),
        "full_rebuild": rebuild,
        "rebuild_identical_to_last": identical(layout, runs[-1]["version"], rebuild["version"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=10_000_000)
    parser.add_argument("--increment", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--daily", type=int, default=300_000)
    parser.add_argument("--skip", choices=["growth", "daily"], default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "command": "python -m bench.batch_incremental --history "
        f"{args.history} --increment {args.increment} --days {args.days} --daily {args.daily}",
        "spark": "local[2], driver 2g, wall time of spark-submit (JVM start-up included)",
    }
    with tempfile.TemporaryDirectory(prefix="lambda-bench-incremental-") as name:
        tmp = Path(name)
        if args.skip != "growth":
            report["growth"] = growth(tmp, args.history, args.increment)
            print(report["growth"])
        if args.skip != "daily":
            report["daily"] = daily(tmp, args.days, args.daily)
            print({k: v for k, v in report["daily"].items() if k != "runs"})
    write_report("batch_incremental", report)


if __name__ == "__main__":
    main()
