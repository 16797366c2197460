"""One set of LAMBDA_KAFKA_* settings secures every Kafka client of the platform."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from lambda_contracts.secret_env import without_secrets
from lambda_contracts.settings import PROJECT_ROOT, Settings

CLIENTS = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient"}
PACKAGES = ("speed_layer", "batch_layer", "serving", "infra", "producer", "bench", "dags")


def test_plaintext_by_default() -> None:
    settings = Settings(kafka_bootstrap="a:1,b:2")
    admin = {"bootstrap_servers": ["a:1", "b:2"], "security_protocol": "PLAINTEXT"}
    assert settings.kafka_admin_config == admin
    # a consumer's or producer's metadata request never creates the topic it asks about
    assert settings.kafka_client_config == {**admin, "allow_auto_create_topics": False}


def test_sasl_ssl_carries_the_credentials_and_the_ca(tmp_path: Path) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_plain_username="speed",
        kafka_sasl_plain_password="s3cret",
        kafka_ssl_cafile=tmp_path / "ca.pem",
    )
    config = settings.kafka_client_config
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "speed"
    assert config["sasl_plain_password"] == "s3cret"
    assert config["ssl_cafile"] == str(tmp_path / "ca.pem")
    assert "s3cret" not in repr(settings)  # a secret, never printed


def test_the_password_is_a_secret_kept_from_children() -> None:
    env = {"LAMBDA_KAFKA_SASL_PLAIN_PASSWORD": "s3cret", "LAMBDA_TOPIC": "t"}
    assert without_secrets(env) == {"LAMBDA_TOPIC": "t"}
    assert (
        "LAMBDA_KAFKA_SASL_PLAIN_PASSWORD"
        not in Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_plain_username="u",
            kafka_sasl_plain_password="s3cret",
        ).as_env()
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"kafka_security_protocol": "SASL_SSL"},
        {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN"},
        {"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/c.pem"},
        {"kafka_security_protocol": "TLS"},
        {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI"},
    ],
)
def test_incomplete_security_is_refused_at_start_up(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings(**fields)  # type: ignore[arg-type]


def test_ssl_files_only_reach_tls_clients(tmp_path: Path) -> None:
    config = Settings(kafka_ssl_cafile=tmp_path / "ca.pem").kafka_client_config
    assert "ssl_cafile" not in config  # PLAINTEXT: no TLS to check a certificate with


def _client_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", None))
                    if name in CLIENTS:
                        calls.append((f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}", node))
    return calls


def test_every_client_of_the_platform_is_built_from_the_client_config() -> None:
    """A client given only ``bootstrap_servers`` would ignore the security settings and be
    refused by a secured cluster: every one takes the whole config (``**``)."""
    calls = _client_calls()
    assert len(calls) >= 10  # the speed layer, serving, infra, producer, benchmarks
    for where, call in calls:
        keywords = {k.arg for k in call.keywords}
        assert None in keywords, f"{where}: a Kafka client without **kafka_client_config"
        spread = {getattr(k.value, "attr", None) for k in call.keywords if k.arg is None}
        admin = getattr(call.func, "id", getattr(call.func, "attr", None)) == "KafkaAdminClient"
        wrong = "kafka_client_config" if admin else "kafka_admin_config"
        assert wrong not in spread, f"{where}: built from {wrong}"
        assert "allow_auto_create_topics" not in keywords, f"{where}: set by the config"
        assert "bootstrap_servers" not in keywords, f"{where}: brokers given past the config"
