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
