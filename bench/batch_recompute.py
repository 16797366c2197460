"""A full Spark recompute at 1M and 10M events vs DuckDB computing the same views, same dedup.

    .venv/bin/python -m bench.batch_recompute [--sizes 1000000 10000000] [--landing-dir DIR]
        [--runs N]

``--landing-dir`` keeps the generated landing zones there and reuses them on the next run
(the same input for comparing two versions of the job); each run writes a new version.
``--runs N`` times each size N times, Spark and DuckDB alternately, and reports the median
ratio: on a shared 2-core machine one pair swings by ±15 %.

Both engines read the same landing files and run the view SQL derived from the same
declarations; their outputs are compared row for row. Spark's time is the wall time of
``spark-submit`` (JVM start-up included), local[2], of a full run (``lambda_rebuild``'s; the
scheduled runs are incremental: ``bench.batch_incremental``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from batch_layer.inputs import spark_uri
from batch_layer.jvm import describe
from batch_layer.pipeline import recompute
from batch_layer.spark_dedup import EVENT_COLUMNS
from bench.common import Timer, same_parquet_rows, write_report
from bench.synthetic import landing_bytes, write_landing
from lambda_contracts.batch_files import view_files
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.views import VIEWS

BUCKET_MS = 300_000
START = 1_795_000_000_000
SPAN = 2 * 86_400_000


def duckdb_views(layout: Layout, horizon: int, out_dir: Path) -> None:
    """Same dedup and the same view SQL, on DuckDB, to Parquet.

    First copy in log order per id: the synthetic copies all lie well within the default 24 h
    dedup horizon (at most 1% of the 2-day span apart), where that is the rule's answer too.
    """
    files = [spark_uri(layout, k) for k in layout.landing_files(below_ms=horizon)]
    con = duckdb.connect()
    cols = ", ".join(f"first.{c} AS {c}" for c in EVENT_COLUMNS)
    con.execute(
        f"CREATE TEMP TABLE events AS SELECT {cols} FROM ("
        " SELECT arg_min(l, (kafka_ts, kafka_partition, kafka_offset)) AS first"
        " FROM read_parquet(?) AS l GROUP BY transaction_id)",
        [files],
    )
    for view in VIEWS:
        target = out_dir / f"{view.name}.parquet"
        con.execute(f"COPY ({view.batch_sql('events')}) TO '{target}' (FORMAT parquet)")
    con.close()


def same_output(layout: Layout, version: str, duck_dir: Path) -> bool:
    """Spark's views and DuckDB's, compared row for row (outside the timed sections)."""
    for view in VIEWS:
        spark_files = [layout.store.path(k) for k in view_files(layout, version, view.name)]
        cols = ", ".join([*view.key_columns, *view.measure_names])
        duck = [str(duck_dir / f"{view.name}.parquet")]
        if not same_parquet_rows((spark_files, cols), (duck, cols)):
            return False
    return True


def timed_pair(layout: Layout, settings: Settings, horizon: int, duck_dir: Path) -> dict:
    """One full Spark run and one DuckDB run of the same views, timed, then compared."""
    version = f"v{int(time.time() * 1000)}"
    with Timer() as spark:
        recompute(settings, horizon, version, "bench", full=True)
    duck_dir.mkdir()
    with Timer() as duck:
        duckdb_views(layout, horizon, duck_dir)
    identical = same_output(layout, version, duck_dir)
    manifest = layout.read_manifest(version)
    steps = manifest.steps_s if manifest else None
    layout.store.delete_prefix(layout.version_prefix(version))
    shutil.rmtree(duck_dir)
    return {
        "spark_s": round(spark.seconds, 2),
        "duckdb_s": round(duck.seconds, 2),
        "ratio": round(spark.seconds / duck.seconds, 2),
        "identical_output": identical,
        "spark_steps_s": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--landing-dir", type=Path, help="keep and reuse the landing zones here")
    parser.add_argument("--runs", type=int, default=1, help="pairs of runs per size")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="lambda-bench-batch-") as tmp:
        for size in args.sizes:
            data_dir = (args.landing_dir or Path(tmp)) / f"n{size}"
            settings = Settings(data_dir=data_dir, bucket_ms=BUCKET_MS)
            layout = Layout.of(settings)
            ready = data_dir / "landing-complete"
            if not ready.exists():
                shutil.rmtree(data_dir, ignore_errors=True)
                write_landing(layout, size, START, SPAN, settings.partitions, BUCKET_MS)
                ready.touch()
            horizon = START + SPAN + BUCKET_MS
            pairs = []
            for run in range(args.runs):
                pairs.append(timed_pair(layout, settings, horizon, Path(tmp) / f"duck{run}"))
                print(size, pairs[-1], flush=True)
            results.append(
                {
                    "events": size,
                    "landing_mb": round(landing_bytes(layout.landing_dir) / 1e6, 1),
                    "spark_s": statistics.median(p["spark_s"] for p in pairs),
                    "duckdb_s": statistics.median(p["duckdb_s"] for p in pairs),
                    "median_ratio": statistics.median(p["ratio"] for p in pairs),
                    "identical_output": all(p["identical_output"] for p in pairs),
                    "runs": pairs,
                }
            )
            print({k: v for k, v in results[-1].items() if k != "runs"}, flush=True)
    growth = results[-1]["spark_s"] / results[0]["spark_s"] if len(results) > 1 else None
    write_report(
        "batch_recompute",
        {
            "command": "python -m bench.batch_recompute --sizes "
            + " ".join(map(str, args.sizes))
            + f" --runs {args.runs}",
            "runs": results,
            "spark_growth_first_to_last": round(growth, 2) if growth else None,
            "events_growth_first_to_last": args.sizes[-1] / args.sizes[0],
            "spark": "local[2], driver 2g, shuffle partitions 4, wall time of spark-submit",
            "spark_jvm": describe(Settings()),
        },
    )


if __name__ == "__main__":
    main()
