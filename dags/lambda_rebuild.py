"""
### lambda_rebuild — full rebuild, optionally re-landing a range of buckets from Kafka first

Triggered by hand (no schedule). Parameters:

- **reland_from_ms / reland_to_ms** — if both are set, the records of ingest buckets in
  [from, to) are read again from Kafka and re-landed (for buckets whose landing files were lost
  or damaged; Kafka must still retain them). Overlap with existing files is harmless.
- **horizon_ms** — the horizon of the rebuilt version; default: the landing watermark. Checked
  by ``batch_layer.horizon.choose_horizon``: on a bucket boundary, at most the watermark, and
  no older than the speed rows kept for rollback reach.

A rebuild does not publish while a rollback pins ``CURRENT`` (``lambda-batch resume`` first).

Then, like ``lambda_batch``, but not incremental: recompute every view from the whole landing
zone in Spark (the audit of the incremental runs: the same views, row for row),
validate, publish, expire absorbed speed rows, prune old versions (keeping
``LAMBDA_BATCH_KEEP_VERSIONS`` validated ones, as ``lambda_batch`` does), report.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from batch_layer.submit import spark_submit_operator, yield_cpu
from lambda_contracts.settings import get_settings

SETTINGS = get_settings()


@dag(
    dag_id="lambda_rebuild",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "on_execute_callback": yield_cpu,
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
    },
    tags=["lambda", "batch", "rebuild"],
    doc_md=__doc__,
    params={
        "horizon_ms": Param(None, type=["null", "integer"], description="default: watermark"),
        "reland_from_ms": Param(None, type=["null", "integer"], description="first bucket"),
        "reland_to_ms": Param(None, type=["null", "integer"], description="exclusive end"),
    },
)
def lambda_rebuild() -> None:
    @task
    def reland_range(params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        from batch_layer.reland import reland

        params = params or {}
        start, stop = params.get("reland_from_ms"), params.get("reland_to_ms")
        if start is None or stop is None:
            return None
        summary = reland(get_settings(), int(start), int(stop))
        print(f"re-landed {summary['records']} records into {len(summary['files'])} files")
        return summary

    @task
    def choose(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from batch_layer.horizon import choose_horizon
        from batch_layer.versions import new_version_id

        requested = (params or {}).get("horizon_ms")
        horizon = choose_horizon(
            get_settings(), None if requested is None else int(requested), rebuild=True
        )
        if horizon is None:
            raise ValueError("nothing is landed and sealed yet")
        return {"horizon_ms": horizon, "version": new_version_id("rebuild")}

    plan = choose()
    recompute = spark_submit_operator(
        "recompute",
        "lambda-rebuild",
        horizon="{{ ti.xcom_pull(task_ids='choose')['horizon_ms'] }}",
        version="{{ ti.xcom_pull(task_ids='choose')['version'] }}",
        settings=SETTINGS,
        full=True,
    )

    @task
    def validate_and_publish(plan: dict[str, Any]) -> dict[str, Any]:
        from batch_layer.pipeline import expire, publish_version
        from batch_layer.validate import validate_version
        from batch_layer.versions import prune
        from lambda_contracts.layout import Layout

        settings = get_settings()
        layout = Layout.of(settings)
        validate_version(layout, plan["version"])
        report = publish_version(settings, plan["version"], rebuild=True)
        report["expired_speed_rows"] = expire(settings, report["horizon_ms"])
        # Expiry and the keep window move together: without a prune, versions whose speed
        # rows are expired would pile up, listed yet beyond a rollback's reach.
        report["pruned"] = prune(layout, settings.batch_keep_versions, running=plan["version"])
        print(f"rebuilt {plan['version']} at horizon {report['horizon_ms']}: {report}")
        return report

    reland_range() >> plan >> recompute >> validate_and_publish(plan)


lambda_rebuild()
