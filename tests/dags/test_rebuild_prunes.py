"""lambda_rebuild prunes after it expires, as lambda_batch does (issue 32, item 9).

Without the prune, each rebuild moved the speed floor up while the versions below it stayed
listed as validated, beyond a rollback's reach. The task's own callable runs against a data
directory of hand-written versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag

from batch_layer.catalog import list_versions
from batch_layer.retention import rollback_reach
from batch_layer.versions import publish
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from tests.support.versions import validated

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dag() -> Any:
    return DagBag(dag_folder=str(DAGS_DIR)).dags["lambda_rebuild"]


def test_a_rebuild_keeps_only_the_newest_validated_versions(
    tmp_path: Path, dag: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, bucket_ms=1000, partitions=1, batch_keep_versions=2)
    layout = Layout.of(settings)
    older = [validated(layout, f"0{n}", n * 1000) for n in (1, 2, 3)]
    for version in older:
        publish(layout, version)
    rebuilt = validated(layout, "04", 3000)
    step = dag.get_task("validate_and_publish").python_callable
    monkeypatch.setitem(step.__globals__, "get_settings", lambda: settings)
    report = step({"version": rebuilt, "horizon_ms": 3000})
    assert report["pruned"] == older[:2]
    assert list_versions(layout) == [older[2], rebuilt]
    reach = rollback_reach(layout)
    assert reach == {older[2]: None, rebuilt: "CURRENT"}
