"""
### lambda_housekeeping — Airflow's own task logs and run records, kept for a retention

Daily. A platform left running for weeks would otherwise grow Airflow's state without bound:
a log file per task try, a row per run, task instance, XCom and log event.

- **clean_task_logs** deletes the files under Airflow's log folder (task logs, the DAG
  processor's logs) last written before the retention, and the directories left empty.
- **clean_run_records** runs `airflow db clean` for the same point, without archive tables:
  DAG runs, task instances, XComs, log events and the rest of the metadata. Airflow keeps
  each DAG's newest run whatever its age.

The retention is `LAMBDA_AIRFLOW_RETENTION_DAYS` (default 14): long enough to look into a
failed run of last week, short enough to keep the data directory flat.
"""

from __future__ import annotations

import os
import shlex
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import dag, task

from lambda_contracts.settings import get_settings

SETTINGS = get_settings()


def expired_logs(root: Path, before_s: float) -> list[Path]:
    """Delete the files under ``root`` last modified before ``before_s`` (epoch seconds) and
    the directories this leaves empty (``root`` itself stays); return the files deleted."""
    deleted = []
    for folder, _dirs, files in os.walk(root, topdown=False):
        path = Path(folder)
        for name in files:
            file = path / name
            try:
                if file.stat().st_mtime < before_s:
                    file.unlink()
                    deleted.append(file)
            except FileNotFoundError:  # a log rotated or removed meanwhile
                continue
        if path != root and not any(path.iterdir()):
            path.rmdir()
    return deleted


def retention_start() -> pendulum.DateTime:
    return pendulum.now("UTC") - timedelta(days=SETTINGS.airflow_retention_days)


@dag(
    dag_id="lambda_housekeeping",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["lambda", "housekeeping"],
    doc_md=__doc__,
)
def lambda_housekeeping() -> None:
    @task
    def clean_task_logs() -> dict[str, Any]:
        from airflow.configuration import conf

        root = Path(conf.get("logging", "base_log_folder"))
        if not root.is_dir():
            return {"deleted": 0}
        deleted = expired_logs(root, retention_start().timestamp())
        return {"deleted": len(deleted), "root": str(root)}

    @task.bash
    def clean_run_records() -> str:
        before = shlex.quote(retention_start().isoformat())
        return f"airflow db clean --clean-before-timestamp {before} --skip-archive --yes"

    clean_task_logs() >> clean_run_records()


lambda_housekeeping()
