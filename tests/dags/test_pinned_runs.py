"""lambda_batch does not publish over a rollback: its tasks skip (and log it) while pinned.

The tasks' own callables are run against a data directory where CURRENT is pinned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import AirflowSkipException

from batch_layer.versions import publish, rollback
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from tests.support.versions import validated

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dag() -> Any:
    return DagBag(dag_folder=str(DAGS_DIR)).dags["lambda_batch"]


@pytest.fixture
def pinned(tmp_path: Path, dag: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, str]:
    settings = Settings(data_dir=tmp_path, bucket_ms=1000, partitions=1)
    layout = Layout.of(settings)
    v1 = validated(layout, "01", 1000)
    publish(layout, validated(layout, "02", 2000))
    rollback(layout, v1)
    for task in dag.tasks:
        callable_ = getattr(task, "python_callable", None)
        if callable_ is not None:
            monkeypatch.setitem(callable_.__globals__, "get_settings", lambda: settings)
    return settings, validated(layout, "03", 3000)


def test_the_sensor_skips_the_run_while_pinned(
    dag: Any, pinned: tuple[Settings, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AirflowSkipException):
        dag.get_task("wait_for_sealed_data").python_callable()
    assert "pinned" in capsys.readouterr().out


def test_publish_skips_if_a_rollback_pinned_current_meanwhile(
    dag: Any, pinned: tuple[Settings, str], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, newer = pinned
    with pytest.raises(AirflowSkipException):
        dag.get_task("publish").python_callable(newer, {"events": 5})
    assert "not publishing" in capsys.readouterr().out
    assert Layout.of(settings).read_current().version != newer
