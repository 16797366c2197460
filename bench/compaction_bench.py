"""Landing written the way the speed layer writes it, then compacted: files, time, run time.

    .venv/bin/python -m bench.compaction_bench [--hours 24] [--rate 20] [--flush-s 2]

The demo rate (20 events/s over 4 partitions) landed as one file per partition every
``--flush-s`` seconds, for ``--hours`` of ingest. Reports the number of landing files before
and after ``batch_layer.compaction.compact``, its time, and the Spark recompute of the same
horizon over the small files and over the compacted ones (same views, compared row for row).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from batch_layer.compaction import compact
from batch_layer.pipeline import recompute
from batch_layer.versions import new_version_id
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
    args = parser.parse_args()

    span_ms = int(args.hours * 3_600_000)
    events = int(args.rate * args.hours * 3600)
    # One file per partition per flush, as LAMBDA_LANDING_FLUSH_MS writes them.
    per_file = max(1, round(args.rate / args.partitions * args.flush_s))
    horizon = START + span_ms - span_ms % BUCKET_MS
    with tempfile.TemporaryDirectory(prefix="bench-compaction-") as tmp:
        settings = Settings(data_dir=Path(tmp), bucket_ms=BUCKET_MS)
        layout = Layout.of(settings)
        with Timer() as landing_time:
            write_landing(
                layout, events, START, span_ms, args.partitions, BUCKET_MS, file_rows=per_file
            )
        files_before = len(layout.landing_files(below_ms=horizon))

        small, compacted = new_version_id("small"), new_version_id("compacted")
        with Timer() as small_run:
            recompute(settings, horizon, small, "bench")
        with Timer() as compaction:
            report = compact(layout, below_ms=horizon)
        files_after = len(layout.landing_files(below_ms=horizon))
        with Timer() as compacted_run:
            recompute(settings, horizon, compacted, "bench")
        same = batch_views(layout, small) == batch_views(layout, compacted)

    write_report(
        "compaction",
        {
            "hours": args.hours,
            "events": events,
            "rows_per_small_file": per_file,
            "landing_files_before": files_before,
            "landing_files_after": files_after,
            "buckets": report.buckets,
            "write_small_files_s": round(landing_time.seconds, 1),
            "compaction_s": round(compaction.seconds, 1),
            "spark_run_small_files_s": round(small_run.seconds, 1),
            "spark_run_compacted_s": round(compacted_run.seconds, 1),
            "speed_up": round(small_run.seconds / compacted_run.seconds, 2),
            "identical_views": same,
        },
    )


if __name__ == "__main__":
    main()
