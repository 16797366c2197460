"""The same batch work on the local directory and on S3 (versitygw on loopback), side by side.

For each backend, in one run: land the same synthetic events (one PUT per file on S3), recompute
every view with Spark (spark-submit, local[2]; over s3a:// on S3), validate, publish, and load
the published version into serving's DuckDB store (what the first request after a publish
waits for), then answer one account summary. The views of both runs must be identical.

    python -m bench.storage_bench --events 10000000

``LAMBDA_BENCH_S3_PORT`` moves the private S3 server (default 37070).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from batch_layer.pipeline import recompute
from batch_layer.validate import validate_version
from batch_layer.versions import publish
from bench.batch_recompute import BUCKET_MS, SPAN, START
from bench.common import Timer, write_report
from bench.synthetic import write_landing
from infra.s3_server import start_s3_server
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.views import ACCOUNT_MINUTE
from serving.batch_store import BatchStore
from serving.row_query import RowQuery
from tests.support.pipeline import batch_views

S3_PORT = int(os.environ.get("LAMBDA_BENCH_S3_PORT", "37070"))
ACCESS, SECRET = "bench-key", "bench-secret"


def run_backend(settings: Settings, events: int) -> dict[str, Any]:
    layout = Layout.of(settings)
    layout.store.check()
    with Timer() as landing:
        write_landing(layout, events, START, SPAN, settings.partitions, BUCKET_MS)
    files = layout.landing_files()
    end = START + SPAN
    horizon = end - end % BUCKET_MS + 2 * BUCKET_MS  # on a bucket boundary, past every event
    with Timer() as spark:
        recompute(settings, horizon, "vbench", "bench")
    with Timer() as validation:
        validate_version(layout, "vbench")
    publish(layout, "vbench")
    store = BatchStore(layout)
    with Timer() as load:
        pointer = store.current()  # loads the published version: the first request's wait
    started = time.perf_counter()
    query = RowQuery.of(ACCOUNT_MINUTE, 0, 2**62, filters={"source_account_id": "100042"})
    rows = store.rows("vbench", query)
    first_query_ms = (time.perf_counter() - started) * 1000
    assert pointer is not None and rows
    return {
        "landing_files": len(files),
        "land_s": round(landing.seconds, 2),
        "spark_recompute_s": round(spark.seconds, 2),
        "validate_s": round(validation.seconds, 2),
        "version_load_s": round(load.seconds, 2),
        "first_query_ms": round(first_query_ms, 2),
        "views": batch_views(layout, "vbench"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    args = parser.parse_args()
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS, SECRET
    with tempfile.TemporaryDirectory(prefix="lambda-bench-storage-") as tmp:
        server = start_s3_server(Path(tmp) / "s3", S3_PORT, ACCESS, SECRET, buckets=("bench",))
        try:
            local = run_backend(
                Settings(data_dir=Path(tmp) / "local", bucket_ms=BUCKET_MS), args.events
            )
            s3 = run_backend(
                Settings(
                    data_dir=Path(tmp) / "s3-data",
                    bucket_ms=BUCKET_MS,
                    storage_url="s3://bench/lambda",
                    s3_endpoint=server.endpoint,
                ),
                args.events,
            )
        finally:
            server.stop()
    identical = local.pop("views") == s3.pop("views")
    ratios = {
        f"{k}_s3_over_local": round(s3[k] / local[k], 2)
        for k in ("land_s", "spark_recompute_s", "version_load_s")
        if local[k]
    }
    write_report(
        "storage",
        {
            "command": f"python -m bench.storage_bench --events {args.events}",
            "events": args.events,
            "local": local,
            "s3_versitygw_loopback": s3,
            "ratios": ratios,
            "identical_views": identical,
        },
    )


if __name__ == "__main__":
    main()
