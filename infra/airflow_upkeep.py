"""Airflow's own state kept within a retention: old task logs and old run records go.

A platform left running for weeks would otherwise grow Airflow's state without bound: a log
file per task try, and a row per run, task instance, XCom and log event. This runs as a
process of its own next to the scheduler (``lambda-platform airflow-upkeep``), not as a DAG:
Airflow 3's task supervisor gives a task no metadata database, so ``airflow db clean`` cannot
run inside one.

- **task logs**: the files under Airflow's log folder (task logs, the DAG processor's logs)
  last written before the retention, and the directories left empty;
- **run records**: ``airflow db clean`` for the same point, without archive tables (DAG runs,
  task instances, XComs, log events and the rest of the metadata). Airflow keeps each DAG's
  newest run whatever its age.

The retention is ``LAMBDA_AIRFLOW_RETENTION_DAYS``; the pass repeats every
``LAMBDA_AIRFLOW_UPKEEP_INTERVAL_S``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from lambda_contracts.settings import Settings

log = structlog.get_logger("airflow-upkeep")

DB_CLEAN_TIMEOUT_S = 1800.0  # a first clean after months without one deletes much


@dataclass(frozen=True)
class UpkeepPass:
    """What one pass did: the cut-off (records and logs before it are gone), the log files
    deleted."""

    before: datetime
    logs_deleted: int


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
        try:
            if path != root and not any(path.iterdir()):
                path.rmdir()
        except (FileNotFoundError, OSError):  # a task wrote into it meanwhile
            continue
    return deleted


def retention_start(settings: Settings, now: datetime | None = None) -> datetime:
    """The cut-off: what was last written before it is deleted."""
    return (now or datetime.now(UTC)) - timedelta(days=settings.airflow_retention_days)


def clean_run_records(env: Mapping[str, str], before: datetime) -> None:
    """``airflow db clean`` up to ``before`` with the given Airflow environment; raises
    :class:`subprocess.CalledProcessError` (with Airflow's output) if it fails."""
    command = ["airflow", "db", "clean", "--clean-before-timestamp", before.isoformat()]
    command += ["--skip-archive", "--yes"]
    subprocess.run(
        command, env=dict(env), check=True, capture_output=True, text=True,
        timeout=DB_CLEAN_TIMEOUT_S,
    )  # fmt: skip


def upkeep_once(settings: Settings, env: Mapping[str, str]) -> UpkeepPass:
    """One pass: the expired task logs, then the expired run records."""
    before = retention_start(settings)
    root = Path(env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
    deleted = expired_logs(root, before.timestamp()) if root.is_dir() else []
    clean_run_records(env, before)
    return UpkeepPass(before, len(deleted))


def run(settings: Settings, env: Mapping[str, str], stop: threading.Event) -> None:
    """A pass now, then one every ``airflow_upkeep_interval_s`` until ``stop``. A pass that
    fails is logged and tried again at the next interval: the scheduler does not depend on it."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            done = upkeep_once(settings, env)
            log.info(
                "airflow upkeep", before=done.before.isoformat(), logs_deleted=done.logs_deleted,
                took_s=round(time.monotonic() - started, 1),
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            tail = (exc.stderr or exc.stdout or "")[-2000:]
            log.error("airflow db clean failed", exit_code=exc.returncode, output=tail)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("airflow upkeep failed", error=repr(exc))
        stop.wait(settings.airflow_upkeep_interval_s)
