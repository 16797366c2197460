"""docker-compose.yml stays built on the same code and settings as local mode."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from lambda_contracts.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
APP_SERVICES = {n: s for n, s in COMPOSE["services"].items() if s.get("build") == "."}


def test_app_services_run_the_projects_own_commands() -> None:
    assert {"speed", "serving", "airflow-apiserver", "airflow-scheduler", "producer"} <= set(
        APP_SERVICES
    )
    for name, service in APP_SERVICES.items():
        program = service["command"][0]
        assert program in SCRIPTS or program in ("python", "spark-class"), name


def test_lambda_variables_are_real_settings() -> None:
    fields = {f"LAMBDA_{name.upper()}" for name in Settings.model_fields}
    for name, service in APP_SERVICES.items():
        unknown = {k for k in service.get("environment", {}) if k.startswith("LAMBDA_")} - fields
        assert not unknown, f"{name}: {unknown}"


def test_kafka_is_the_official_image_in_kraft_mode() -> None:
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert all(
        p.startswith("127.0.0.1:") for s in COMPOSE["services"].values() for p in s.get("ports", [])
    )


def test_airflow_async_database_url_uses_an_installed_driver() -> None:
    """Airflow derives postgresql+asyncpg from the sync URL unless told; asyncpg is not
    installed, so the async URL must be explicit and its driver importable."""
    from sqlalchemy.ext.asyncio import create_async_engine

    env = COMPOSE["x-app"]["environment"]
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]
    assert url.startswith("postgresql+psycopg_async://")
    create_async_engine(url)  # resolves the dialect and imports the driver, connects to nothing


def test_kafka_keeps_its_log_on_the_volume() -> None:
    kafka = COMPOSE["services"]["kafka"]
    log_dir = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert any(v.split(":")[1] == log_dir for v in kafka["volumes"])


def test_cluster_driver_is_reachable_by_the_workers() -> None:
    from batch_layer.submit import spark_conf, spark_env

    scheduler = COMPOSE["services"]["airflow-scheduler"]["environment"]
    settings = Settings(
        spark_master=COMPOSE["x-app"]["environment"]["LAMBDA_SPARK_MASTER"],
        spark_driver_host=scheduler["LAMBDA_SPARK_DRIVER_HOST"],
    )
    assert "SPARK_LOCAL_IP" not in spark_env(settings)
    assert spark_conf(settings)["spark.driver.host"] == "airflow-scheduler"
    assert spark_env(Settings())["SPARK_LOCAL_IP"] == "127.0.0.1"  # local mode stays on loopback


def test_docker_build_context_leaves_out_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "data", ".cache", ".git"} <= set(ignored)
