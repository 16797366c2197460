"""Recent batch publishes for the dashboard's batch-runs panel.

Each run as the speed store recorded its publish (horizon, events absorbed, drift of the speed
layer's count from batch's) with its version's manifest beside it (full or incremental, how
long the job took, the Airflow run that wrote it). A published version's manifest never
changes, so each is read once and kept, a bounded number of them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

from lambda_contracts.buckets import ms_to_iso
from lambda_contracts.layout import Layout
from lambda_contracts.manifest import Manifest
from serving.schemas import money
from serving.speed_store import SpeedReader

KEPT_MANIFESTS = 64


class BatchRuns:
    def __init__(self, speed: SpeedReader, layout: Layout, airflow_ui_url: str) -> None:
        self.speed = speed
        self.layout = layout
        self.airflow_ui_url = airflow_ui_url.rstrip("/")
        self._manifests: OrderedDict[str, Manifest | None] = OrderedDict()
        self._lock = threading.Lock()

    def recent(self, limit: int, current: str | None) -> list[dict[str, Any]]:
        """The latest ``limit`` publishes, newest first; ``current``: CURRENT's version."""
        return [self._described(run, current) for run in self.speed.runs(limit)]

    def _described(self, run: dict[str, Any], current: str | None) -> dict[str, Any]:
        manifest = self._manifest(run["version"])
        drift_cents = run["drift_cents"]
        return {
            "version": run["version"],
            "current": run["version"] == current,
            "horizon": ms_to_iso(run["horizon_ms"]),
            "horizon_ms": run["horizon_ms"],
            "previous_horizon_ms": run["previous_horizon_ms"],
            "increment_ms": run["horizon_ms"] - run["previous_horizon_ms"],
            "published_at": ms_to_iso(run["published_at_ms"]),
            "published_at_ms": run["published_at_ms"],
            "batch_events": run["batch_events"],
            "speed_events": run["speed_events"],
            "drift_events": run["drift_events"],
            "drift_amount": None if drift_cents is None else money(drift_cents),
            "mode": manifest.mode if manifest else None,
            "elapsed_s": manifest.elapsed_s if manifest else None,
            "run_id": manifest.run_id if manifest else None,
            "airflow_run_url": self._run_url(manifest),
        }

    def _run_url(self, manifest: Manifest | None) -> str | None:
        if manifest is None or not manifest.dag_id or not manifest.run_id:
            return None  # written outside Airflow (lambda-batch run-once, a test)
        dag, run = quote(manifest.dag_id, safe=""), quote(manifest.run_id, safe="")
        return f"{self.airflow_ui_url}/dags/{dag}/runs/{run}"

    def _manifest(self, version: str) -> Manifest | None:
        """The version's manifest (None once the version is deleted), read once."""
        with self._lock:  # requests run on the thread pool
            if version in self._manifests:
                self._manifests.move_to_end(version)
                return self._manifests[version]
        manifest = self.layout.read_manifest(version)
        with self._lock:
            self._manifests[version] = manifest
            while len(self._manifests) > KEPT_MANIFESTS:
                self._manifests.popitem(last=False)
        return manifest
