"""What lambda_housekeeping deletes: files last written before the cut-off, and the folders
this leaves empty; never the log folder itself, never a recent file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def expired_logs():  # type: ignore[no-untyped-def]
    dag = DagBag(dag_folder=str(DAGS_DIR)).dags["lambda_housekeeping"]
    return dag.get_task("clean_task_logs").python_callable.__globals__["expired_logs"]


def test_only_files_before_the_cut_off_go(tmp_path: Path, expired_logs) -> None:  # type: ignore[no-untyped-def]
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


def test_an_empty_log_folder_is_kept(tmp_path: Path, expired_logs) -> None:  # type: ignore[no-untyped-def]
    assert expired_logs(tmp_path, before_s=2_000) == []
    assert tmp_path.is_dir()
