"""``lambda-platform airflow-upkeep --once`` on a real Airflow home: task logs and run records
past the retention go, recent ones stay. It runs outside any task, as the platform's
``airflow-upkeep`` service does: Airflow 3 gives a task no metadata database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from tests.support.pipeline import BIN, airflow, env_for, run_cli

pytestmark = [pytest.mark.integration]

DAY_S = 86_400


def log_events(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT event FROM log")}


def test_upkeep_deletes_logs_and_records_past_the_retention(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", airflow_retention_days=7)
    home = Layout(settings.data_dir).airflow_dir
    logs = home / "logs"
    old_run = logs / "dag_id=lambda_batch" / "run_id=old" / "task_id=publish"
    recent_run = logs / "dag_id=lambda_batch" / "run_id=recent" / "task_id=publish"
    for folder in (old_run, recent_run):
        folder.mkdir(parents=True)
        (folder / "attempt=1.log").write_text("a task's log\n")
    eight_days_ago = time.time() - 8 * DAY_S
    os.utime(old_run / "attempt=1.log", (eight_days_ago, eight_days_ago))
    six_days_ago = time.time() - 6 * DAY_S
    os.utime(recent_run / "attempt=1.log", (six_days_ago, six_days_ago))

    migrated = airflow(settings, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    # Two log events (Airflow's audit table, which `db clean` trims by its time column).
    now = datetime.now(UTC)
    with sqlite3.connect(home / "airflow.db") as conn:
        for event, age in (("old-event", 8), ("recent-event", 6)):
            stamp = (now - timedelta(days=age)).strftime("%Y-%m-%d %H:%M:%S.%f")
            conn.execute("INSERT INTO log (dttm, event) VALUES (?, ?)", (stamp, event))
    assert {"old-event", "recent-event"} <= log_events(home / "airflow.db")

    result = run_cli(settings, "lambda-platform", "airflow-upkeep", "--once", timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "deleted 1 log files" in result.stdout

    events = log_events(home / "airflow.db")
    assert "old-event" not in events, "a record past the retention was kept"
    assert "recent-event" in events, "a record within the retention was deleted"
    assert not old_run.parent.exists(), "an expired run's logs (and its folders) were kept"
    assert (recent_run / "attempt=1.log").exists(), "a log within the retention was deleted"


def test_a_failed_clean_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    """A metadata database that does not answer: the clean fails, and says so in one line."""
    settings = Settings(data_dir=tmp_path / "data")
    nowhere = "postgresql+psycopg://airflow:airflow@127.0.0.1:9/airflow"  # the discard port
    result = subprocess.run(
        [str(BIN / "lambda-platform"), "airflow-upkeep", "--once"],
        env={**env_for(settings), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": nowhere},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("error:") == 1, result.stdout
    assert "airflow db clean failed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
