"""``airflow dags test lambda_housekeeping``: old task logs go, recent ones stay, and Airflow's
own ``db clean`` runs, on a real Airflow home."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from tests.support.pipeline import airflow

pytestmark = [pytest.mark.integration]

DAY_S = 86_400


def test_housekeeping_deletes_logs_past_the_retention(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", airflow_retention_days=7)
    logs = Layout(settings.data_dir).airflow_dir / "logs"
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
    result = airflow(settings, "dags", "test", "lambda_housekeeping")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "airflow db clean --clean-before-timestamp" in output  # the records' clean ran
    assert "meeting deletion criteria" in output
    assert re.search(r"Marking run <DagRun lambda_housekeeping .*> successful", output)

    assert not old_run.parent.exists(), "an expired run's logs (and its folders) were kept"
    assert (recent_run / "attempt=1.log").exists(), "a log within the retention was deleted"
