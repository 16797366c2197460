"""The spark-submit command line of the recompute job, derived from settings.

The master is configuration (``LAMBDA_SPARK_MASTER``): ``local[2]`` by default, a
``spark://host:7077`` standalone cluster in docker compose, YARN or k8s elsewhere.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from batch_layer.inputs import s3a_conf
from batch_layer.jvm import driver_java_options, spark_java_home
from lambda_contracts.priority import lower_cpu_priority
from lambda_contracts.secret_env import blank_secrets, without_secrets
from lambda_contracts.settings import Settings, get_settings

JOB_FILE = Path(__file__).with_name("spark_job.py")


def driver_conf(settings: Settings) -> dict[str, str]:
    """Where executors reach the driver. Locally nothing leaves loopback; on a cluster the
    driver binds every interface and advertises ``LAMBDA_SPARK_DRIVER_HOST`` (a name the
    workers resolve: the compose service or the host name of the Airflow worker)."""
    if settings.spark_runs_locally or settings.spark_driver_host is None:
        return {}
    return {
        "spark.driver.host": settings.spark_driver_host,
        "spark.driver.bindAddress": "0.0.0.0",
    }


def spark_conf(settings: Settings, java_options: str | None = None) -> dict[str, str]:
    """Spark settings sized for a 2-core machine by default; ``java_options`` replace the
    driver JVM's (``batch_layer.jvm``'s by default)."""
    s3a = s3a_conf(settings)
    if java_options is None:
        java_options = driver_java_options(settings, s3a.get("spark.driver.extraClassPath", ""))
    return {
        **driver_conf(settings),
        **s3a,
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.default.parallelism": str(settings.spark_shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.log.level": "WARN",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.parquet.compression.codec": "snappy",
        "spark.driver.extraJavaOptions": java_options,
        # The landing zone is many small files: list them in the driver (no listing job) and
        # pack several into one task.
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
        "spark.sql.files.openCostInBytes": "1048576",
        "spark.sql.files.maxPartitionBytes": "268435456",
    }


def spark_env(settings: Settings) -> dict[str, str]:
    """The job and its Python workers run in this virtualenv's interpreter.

    Inherited secrets are blanked: the job needs none of them (see ``submit_env``). Only a
    local job is pinned to loopback: executors on other hosts must reach a cluster driver.
    """
    env = {
        **blank_secrets(),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    if settings.spark_runs_locally:
        env["SPARK_LOCAL_IP"] = "127.0.0.1"
    java_home = spark_java_home(settings)
    if java_home is not None:
        env["JAVA_HOME"] = str(java_home)
    return env


def spark_submit_binary() -> str:
    local = Path(sys.executable).with_name("spark-submit")
    return str(local) if local.exists() else (shutil.which("spark-submit") or "spark-submit")


def job_arguments(
    horizon_ms: int | str, version: str, run_id: str, full: bool = False, dag_id: str = ""
) -> list[str]:
    """The job's arguments: ``full`` recomputes from the whole landing zone (a rebuild)
    instead of adding the new buckets to the published version; ``dag_id``: the Airflow DAG
    of the run, kept in the manifest."""
    args = ["--horizon", str(horizon_ms), "--version", version, "--run-id", run_id]
    args += ["--dag-id", dag_id] if dag_id else []
    return [*args, "--full"] if full else args


def spark_submit_command(
    settings: Settings,
    horizon_ms: int,
    version: str,
    run_id: str,
    full: bool = False,
    java_options: str | None = None,
) -> list[str]:
    cmd = [
        spark_submit_binary(),
        "--master",
        settings.spark_master,
        "--name",
        f"lambda-{version}",
        "--driver-memory",
        settings.spark_driver_memory,
    ]
    for key, value in spark_conf(settings, java_options).items():
        cmd += ["--conf", f"{key}={value}"]
    return [*cmd, str(JOB_FILE), *job_arguments(horizon_ms, version, run_id, full)]


def submit_env(settings: Settings) -> dict[str, str]:
    """The job's environment: these settings and the Spark variables, and no secrets."""
    return without_secrets({**os.environ, **settings.as_env(), **spark_env(settings)})


def yield_cpu(context: Any) -> None:
    """A DAG task's ``on_execute_callback``: its work (spark-submit included) yields the CPU
    to serving and the speed layer on a shared host (``LAMBDA_BATCH_NICE``). A no-op where the
    scheduler that started the task already runs at that priority, as in local mode."""
    lower_cpu_priority(get_settings().batch_nice)


def spark_submit_operator(  # type: ignore[no-untyped-def]
    task_id: str, name: str, horizon: str, version: str, settings: Settings, full: bool = False
):
    """The Airflow task that really submits the job (both DAGs use it; the rebuild ``full``).

    ``horizon`` and ``version`` are Jinja templates rendered at run time (XCom pulls).
    """
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    return SparkSubmitOperator(
        task_id=task_id,
        conn_id="spark_default",
        application=str(JOB_FILE),
        name=name,
        application_args=job_arguments(
            horizon, version, "{{ run_id }}", full, dag_id="{{ dag.dag_id }}"
        ),
        conf=spark_conf(settings),
        driver_memory=settings.spark_driver_memory,
        env_vars=spark_env(settings),
    )
