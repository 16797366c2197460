"""What a batch run did for the declared views: each version it holds, and its build state once
the run's version is CURRENT — shown where an operator watches a run: the Airflow UI (the
``publish`` task's log, its XCom and the asset event of ``lambda_batch``).

The state follows the one rule serving applies (:func:`lambda_contracts.view_builds.build_state`):
a version serves once a published batch version holds it and its horizon lies past the
version's deploy position in every partition, read from the speed store's registry.
"""

from __future__ import annotations

from typing import Any

from batch_layer.catalog import read_manifest
from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from lambda_contracts.manifest import Manifest
from lambda_contracts.settings import Settings
from lambda_contracts.view_builds import build_state
from lambda_contracts.view_set import registered_versions


def declared_builds(manifest: Manifest, registered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per declared view of ``manifest``'s run: its version, state, progress and what it waits
    for, given the speed store's ``registered`` versions (``registered_versions``)."""
    deployed = {(r["view_name"], r["version"]): r for r in registered}
    report = []
    for name, version in sorted(manifest.declared_views.items()):
        row = deployed.get((name, version))
        held = row is not None and row["storage_name"] in (manifest.output_files or {})
        state = build_state(row, held, manifest.horizon_ms)
        report.append(
            {
                "view": name,
                "version": version,
                "state": state.state,
                "progress": state.progress,
                "waiting_for": state.waiting_for,
            }
        )
    return report


def builds_of(settings: Settings, version: str) -> list[dict[str, Any]]:
    """:func:`declared_builds` of batch version ``version`` (published, or about to be)."""
    manifest = read_manifest(Layout.of(settings), version)
    if not manifest.declared_views:
        return []
    assert settings.speed_store_url is not None  # Settings fills it in
    engine = make_engine(settings.speed_store_url)
    try:
        return declared_builds(manifest, registered_versions(engine))
    finally:
        engine.dispose()


def describe(build: dict[str, Any]) -> str:
    """One line of a build's state, as the run's log shows it."""
    waiting = f", waiting for {build['waiting_for']}" if build["waiting_for"] else ""
    return (
        f"declared view {build['view']} (version {build['version']}): {build['state']}, "
        f"{build['progress']:.0%}{waiting}"
    )
