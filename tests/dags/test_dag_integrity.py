"""Every DAG loads without import errors, has no cycles, and is set up to run safely."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS_DIR))  # examples are off via AIRFLOW__CORE__LOAD_EXAMPLES


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}


def test_expected_dags_are_present(dagbag: DagBag) -> None:
    assert {"lambda_batch", "lambda_rebuild"} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", ["lambda_batch", "lambda_rebuild"])
def test_dag_is_safe_to_schedule(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.tags and "lambda" in dag.tags
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.doc_md
    for task in dag.tasks:
        assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
    # topological sort raises on a cycle
    assert len(dag.topological_sort()) == len(dag.tasks)


def test_batch_dag_order(dagbag: DagBag) -> None:
    dag = dagbag.dags["lambda_batch"]
    order = [t.task_id for t in dag.topological_sort()]
    chain = [
        "wait_for_sealed_data",
        "recompute",
        "validate",
        "publish",
        "expire_speed_rows",
        "report",
    ]
    assert [t for t in order if t in chain] == chain
    assert dag.get_task("recompute").task_type == "SparkSubmitOperator"
    assert dag.get_task("wait_for_sealed_data").mode == "reschedule"
