"""Secrets stay with the processes that need them and out of what is printed."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from batch_layer.submit import spark_env, submit_env
from lambda_contracts.settings import Settings, masked_url

TOKEN = "s3cret-token"


def test_the_api_token_and_the_kafka_password_are_the_secret_settings() -> None:
    assert Settings.secret_env_names() == {"LAMBDA_API_TOKEN", "LAMBDA_KAFKA_SASL_PLAIN_PASSWORD"}


def test_as_env_leaves_secrets_out_unless_asked() -> None:
    settings = Settings(api_token=SecretStr(TOKEN))
    assert "LAMBDA_API_TOKEN" not in settings.as_env()
    assert TOKEN not in settings.as_env().values()
    assert settings.as_env(include_secrets=True)["LAMBDA_API_TOKEN"] == TOKEN


def test_the_spark_job_gets_no_token_from_settings_or_inherited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAMBDA_API_TOKEN", TOKEN)
    settings = Settings()
    assert settings.api_token is not None  # this process has it ...
    env = submit_env(settings)
    assert "LAMBDA_API_TOKEN" not in env and TOKEN not in env.values()  # ... the job does not
    assert env["LAMBDA_BUCKET_MS"] == str(settings.bucket_ms)


def test_airflow_spark_tasks_blank_the_inherited_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """SparkSubmitOperator adds env_vars to the worker's environment: blanking hides it."""
    monkeypatch.setenv("LAMBDA_API_TOKEN", TOKEN)
    for key, value in spark_env(Settings()).items():
        monkeypatch.setenv(key, value)
    assert Settings().api_token is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://lambda:p%40ss@db:5432/lambda",
            "postgresql+psycopg://lambda:***@db:5432/lambda",
        ),
        ("postgresql+psycopg://lambda@db/lambda", "postgresql+psycopg://lambda@db/lambda"),
        ("sqlite:////data/speed/speed.db", "sqlite:////data/speed/speed.db"),
        (None, None),
    ],
)
def test_masked_url_hides_the_password(url: str | None, shown: str | None) -> None:
    assert masked_url(url) == shown


def test_settings_show_the_speed_store_url_masked() -> None:
    settings = Settings(speed_store_url="postgresql+psycopg://u:pw@h/db")
    assert settings.speed_store_url_masked == "postgresql+psycopg://u:***@h/db"
