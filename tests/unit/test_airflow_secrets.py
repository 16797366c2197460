"""Local mode's Airflow secrets: long enough for HS512, made once, kept private."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from infra.airflow_env import airflow_env, password_file
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings


def test_jwt_secret_is_at_least_64_bytes_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    secret = airflow_env(settings)["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(secret.encode()) >= 64  # PyJWT's minimum for an HS512 key
    path = Layout(settings.data_dir).airflow_dir / "jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert airflow_env(settings)["AIRFLOW__API_AUTH__JWT_SECRET"] == secret  # made once


def test_a_short_jwt_secret_of_an_older_version_is_replaced(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    path = Layout(settings.data_dir).airflow_dir / "jwt-secret"
    path.parent.mkdir(parents=True)
    path.write_text("x" * 43)  # what token_urlsafe(32) made before
    password = airflow_env(settings) and password_file(settings).read_text()
    secret = airflow_env(settings)["AIRFLOW__API_AUTH__JWT_SECRET"]
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
