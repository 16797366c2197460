"""What Airflow's upkeep deletes: files last written before the cut-off, and the folders this
leaves empty; never the log folder itself, never a recent file."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from infra.airflow_upkeep import expired_logs, retention_start
from lambda_contracts.settings import Settings


def test_only_files_before_the_cut_off_go(tmp_path: Path) -> None:
    old = tmp_path / "dag_id=a" / "run_id=1" / "attempt=1.log"
    new = tmp_path / "dag_id=a" / "run_id=2" / "attempt=1.log"
    top = tmp_path / "dag_processor.log"
    for path in (old, new, top):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    os.utime(old, (1_000, 1_000))
    os.utime(top, (1_000, 1_000))
    os.utime(new, (3_000, 3_000))
    deleted = expired_logs(tmp_path, before_s=2_000)
    assert sorted(deleted) == sorted([old, top])
    assert not old.parent.exists()  # its run folder was left empty
    assert new.exists() and new.parent.parent.exists()
    assert tmp_path.exists()


def test_an_empty_log_folder_is_kept(tmp_path: Path) -> None:
    assert expired_logs(tmp_path, before_s=2_000) == []
    assert tmp_path.is_dir()


def test_the_retention_may_be_a_fraction_of_a_day(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, airflow_retention_days=0.5)
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert retention_start(settings, now) == datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
