"""Local mode's Airflow secrets: long enough for HS512, made once, kept private."""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
from pathlib import Path

from infra.airflow_env import airflow_env, jwt_env, password_file
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings


def jwt_secret(settings: Settings) -> str:
    """The secret as Airflow reads it: by running the command the API server is given."""
    command = jwt_env(settings, "api-server")["AIRFLOW__API_AUTH__JWT_SECRET_CMD"]
    return subprocess.run(shlex.split(command), capture_output=True, text=True, check=True).stdout


def test_jwt_secret_is_at_least_64_bytes_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    airflow_env(settings)
    secret = jwt_secret(settings)
    assert len(secret.encode()) >= 64  # PyJWT's minimum for an HS512 key
    path = Layout(settings.data_dir).airflow_dir / "jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    airflow_env(settings)
    assert jwt_secret(settings) == secret  # made once


def test_only_the_api_server_and_the_scheduler_can_read_the_jwt_secret(tmp_path: Path) -> None:
    """Not the DAG processor or the triggerer (in-process Execution API), not tasks, Spark or
    serving; and the secret itself is in no process's environment, only how to read it."""
    from batch_layer.submit import submit_env
    from infra.services import platform_services

    settings = Settings(data_dir=tmp_path)
    for service in platform_services(settings, demo=True, demo_rate=1):
        assert "AIRFLOW__API_AUTH__JWT_SECRET" not in service.env, service.name
        holds = "AIRFLOW__API_AUTH__JWT_SECRET_CMD" in service.env
        assert holds == (service.name in ("airflow-api", "airflow-scheduler")), service.name
    secret = jwt_secret(settings)
    everything = [s.env for s in platform_services(settings, True, 1)] + [submit_env(settings)]
    assert not any(secret in value for env in everything for value in env.values())
    assert jwt_env(settings, "dag-processor") == jwt_env(settings, "triggerer") == {}


def test_a_short_jwt_secret_of_an_older_version_is_replaced(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    path = Layout(settings.data_dir).airflow_dir / "jwt-secret"
    path.parent.mkdir(parents=True)
    path.write_text("x" * 43)  # what token_urlsafe(32) made before
    password = airflow_env(settings) and password_file(settings).read_text()
    secret = jwt_secret(settings)
    assert len(secret) >= 64 and secret != "x" * 43
    assert password_file(settings).read_text() == password  # the login is untouched


def test_up_shows_the_password_only_at_the_first_start(tmp_path: Path) -> None:
    from infra import platform

    settings = Settings(data_dir=tmp_path)
    airflow_env(settings)  # the password file exists from here on
    password = json.loads(password_file(settings).read_text())["admin"]
    for first, shown in ((True, True), (False, False)):
        with platform.console.capture() as captured:
            platform._print_where(settings, show_password=first)
        assert (password in captured.get()) is shown
    assert "lambda-platform admin-password" in " ".join(captured.get().split())
