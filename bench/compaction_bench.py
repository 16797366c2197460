"""Landing written the way the speed layer writes it, then compacted: files, time, run time.

    .venv/bin/python -m bench.compaction_bench [--hours 24] [--rate 20] [--flush-s 2]
        [--small-run]

The demo rate (20 events/s over 4 partitions) landed as one file per partition every
``--flush-s`` seconds, for ``--hours`` of ingest. Reports the number of landing files before
and after ``batch_layer.compaction.compact``, its time, and the Spark run (full) over the
compacted files against the same events written in compacted form in the first place (one file
per bucket and partition); ``--small-run`` also times a run over the small files (slow at a
day: every file is listed and opened). Views are compared row for row.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from batch_layer.compaction import compact
from batch_layer.pipeline import recompute
from bench.batch_recompute import BUCKET_MS, START
from bench.common import Timer, write_report
from bench.synthetic import write_landing
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from tests.support.pipeline import batch_views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--rate", type=float, default=20, help="events per second")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--flush-s", type=float, default=2, help="speed layer's flush interval")
    parser.add_argument("--small-run", action="store_true", help="also run over the small files")
    args = parser.parse_args()

    span_ms = int(args.hours * 3_600_000)
    events = int(args.rate * args.hours * 3600)
    # One file per partition per flush, as LAMBDA_LANDING_FLUSH_MS writes them.
    per_file = max(1, round(args.rate / args.partitions * args.flush_s))
    horizon = START + span_ms - span_ms % BUCKET_MS
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compaction-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "speed-written", bucket_ms=BUCKET_MS)
        layout = Layout.of(settings)
        with Timer() as landing_time:
            write_landing(
                layout, events, START, span_ms, args.partitions, BUCKET_MS, file_rows=per_file
            )
        figures["landing_files_before"] = len(layout.landing_files(below_ms=horizon))
        figures["write_small_files_s"] = round(landing_time.seconds, 1)
        if args.small_run:
            with Timer() as small_run:
                recompute(settings, horizon, "vsmall", "bench", full=True)
            figures["spark_run_small_files_s"] = round(small_run.seconds, 1)
        with Timer() as compaction:
            report = compact(layout, below_ms=horizon)
        figures["landing_files_after"] = len(layout.landing_files(below_ms=horizon))
        figures["buckets"] = report.buckets
        figures["compaction_s"] = round(compaction.seconds, 1)
        with Timer() as compacted_run:
            recompute(settings, horizon, "vcompacted", "bench", full=True)

        direct = Settings(data_dir=Path(tmp) / "written-compacted", bucket_ms=BUCKET_MS)
        write_landing(Layout.of(direct), events, START, span_ms, args.partitions, BUCKET_MS)
        with Timer() as direct_run:
            recompute(direct, horizon, "vdirect", "bench", full=True)
        views = batch_views(layout, "vcompacted")
        same = views == batch_views(Layout.of(direct), "vdirect")
        if args.small_run:
            same = same and views == batch_views(layout, "vsmall")
    figures["spark_run_compacted_s"] = round(compacted_run.seconds, 1)
    figures["spark_run_written_compacted_s"] = round(direct_run.seconds, 1)
    figures["compacted_vs_written_compacted"] = round(compacted_run.seconds / direct_run.seconds, 2)
    if args.small_run:
        figures["speed_up"] = round(figures["spark_run_small_files_s"] / compacted_run.seconds, 2)

    write_report(
        "compaction",
        {
            "command": f"python -m bench.compaction_bench --hours {args.hours} --rate {args.rate}"
            + (" --small-run" if args.small_run else ""),
            "hours": args.hours,
            "events": events,
            "rows_per_small_file": per_file,
            **figures,
            "identical_views": same,
        },
    )


if __name__ == "__main__":
    main()
