"""How serving runs its uvicorn workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import serving.main as serving_main
from serving.metrics import MULTIPROC_ENV


def test_slow_starting_workers_are_not_killed_by_uvicorns_healthcheck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spawned worker answers uvicorn's ping only once it has imported the app; under load
    that took longer than uvicorn's default 5 s, and every worker was killed before it
    started (seen in a test loop on a busy machine: the API never came up)."""
    monkeypatch.setenv("LAMBDA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LAMBDA_API_WORKERS", "2")
    # serve() points prometheus-client at a per-run directory for its workers: restore it after.
    monkeypatch.setenv(MULTIPROC_ENV, "")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(serving_main.uvicorn, "run", lambda *a, **kw: seen.update(kw))
    serving_main.get_settings.cache_clear()
    try:
        serving_main.serve()
    finally:
        serving_main.get_settings.cache_clear()
    assert seen["workers"] == 2
    assert seen["timeout_worker_healthcheck"] >= 30
