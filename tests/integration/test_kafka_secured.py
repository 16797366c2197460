"""The platform through a SASL_SSL listener with the Kafka authorizer on (issue 29, §1).

A private broker gets a CA and keystore from openssl and keytool, SCRAM users from
``kafka-storage format --add-scram`` and ACLs from ``kafka-acls``. The producer and the speed
layer each run as their own principal with only the grants they need; the answers are checked
against the acknowledged records. Wrong credentials and missing ACLs end a process with one
line and exit 78 (no retry loop), and a principal cannot do what it was not granted.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import AuthorizationError, KafkaError

from lambda_contracts.db import make_engine
from lambda_contracts.settings import Settings
from lambda_contracts.startup import EXIT_CONFIG
from serving.consumer_group import ConsumerGroup
from serving.dead_letters import DeadLetterTail
from serving.kafka_lag import EndOffsets
from tests.support import ports
from tests.support.pipeline import (
    BIN,
    SpeedProcess,
    TruthRecord,
    assert_landing_holds_every_valid_event_once,
    env_for,
    expected_views,
    mixed_stream,
    produce,
    read_topic,
    speed_views,
    wait_caught_up,
    wait_until,
)
from tests.support.secured_kafka import SecuredBroker, start_secured_broker
from tests.support.topic_settings import fresh_settings

pytestmark = pytest.mark.integration

REFUSAL_PREFIX = "error: Kafka access refused for user "


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    broker = start_secured_broker(tmp_path_factory.mktemp("secured"), ports.SECURED_BROKER)
    yield broker
    broker.stop()


@pytest.fixture
def platform(secured: SecuredBroker, tmp_path: Path) -> Settings:
    """Fresh topics and group (made over the plaintext administration listener), each role
    granted what it needs on them."""
    settings = fresh_settings(secured.broker, tmp_path / "data")
    secured.grant_platform(settings)
    return settings


def run_refused(
    command: list[str], settings: Settings, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        env=env_for(settings, **env),
        capture_output=True,
        text=True,
        timeout=180,
    )


def refusal_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_producer_and_speed_layer_run_through_sasl_ssl_with_their_grants_only(
    secured: SecuredBroker, platform: Settings, tmp_path: Path
) -> None:
    truth = produce(
        platform,
        tmp_path / "truth.jsonl",
        "--count",
        "1500",
        *mixed_stream(0, 30),
        env=secured.role_env("producer"),
    )
    assert {"valid", "duplicate", "late", "malformed"} <= {r.kind for r in truth}

    with SpeedProcess(platform, env=secured.role_env("speed")) as speed:
        engine = make_engine(platform.speed_store_url)
        wait_caught_up(platform, engine)  # read over the administration listener
        assert speed_views(engine) == expected_views(truth)
        serving_reads_lag_group_and_dead_letters(secured, platform, truth)
        assert speed.terminate() == 0
    assert "Kafka access refused" not in speed.log_path.read_text()
    assert_landing_holds_every_valid_event_once(platform, truth)
    dead = read_topic(platform, platform.dlq_topic)
    assert len(dead) == sum(r.kind == "malformed" for r in truth)


def serving_reads_lag_group_and_dead_letters(
    secured: SecuredBroker, platform: Settings, truth: list[TruthRecord]
) -> None:
    """Serving's own principal (Describe on the topic and group, Read on the DLQ) is enough
    for its freshness, consumer-group and rejects readings."""
    settings = secured.role_settings(platform, "serving")
    ends, group, tail = EndOffsets(settings), ConsumerGroup(settings), DeadLetterTail(settings)
    try:
        reading = ends.get()
        assert reading is not None
        want: dict[int, int] = {}
        for record in truth:
            want[record.partition] = max(want.get(record.partition, 0), record.offset + 1)
        assert {p: o for p, o in reading.offsets.items() if o} == want
        described = group.describe()
        assert described is not None and len(described.members) == 1
        assert sorted(described.members[0].partitions) == list(range(platform.partitions))
        malformed = sum(r.kind == "malformed" for r in truth)
        wait_until(
            lambda: (r := tail.read()) is not None and len(r.latest) == min(malformed, 20),
            30,
            "serving's DLQ tail",
        )
    finally:
        ends.close()
        group.close()
        tail.close()


def test_a_principal_may_do_only_what_it_was_granted(
    secured: SecuredBroker, platform: Settings
) -> None:
    producer = secured.role_settings(platform, "producer").kafka_client_config
    reader = KafkaConsumer(
        platform.topic,
        **producer,
        group_id=platform.speed_group,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    with pytest.raises(AuthorizationError):
        list(reader)  # the producer writes events; it may not read them or join the group
    reader.close()

    speed = secured.role_settings(platform, "speed").kafka_client_config
    writer = KafkaProducer(**speed, max_block_ms=10_000)
    with pytest.raises(KafkaError):
        writer.send(platform.topic, b"{}").get(timeout=10)  # the speed layer may not write events
    writer.close(timeout=5)


@pytest.mark.parametrize(
    ("command", "role"),
    [
        (["lambda-speed", "--no-metrics"], "speed"),
        (["lambda-produce", "--count", "5"], "producer"),
        (["lambda-serve"], "serving"),
    ],
)
def test_a_wrong_password_is_one_line_and_exit_78(
    secured: SecuredBroker, platform: Settings, command: list[str], role: str
) -> None:
    result = run_refused(command, platform, secured.role_env(role, password="not-the-password"))
    assert result.returncode == EXIT_CONFIG, result.stderr[-2000:]
    lines = refusal_lines(result)
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"{REFUSAL_PREFIX}'{secured.users[role].name}' over SASL_SSL")
    assert "SaslAuthenticationFailedError" in lines[0]


@pytest.mark.parametrize(
    "command", [["lambda-speed", "--no-metrics"], ["lambda-produce", "--count", "5"]]
)
def test_a_principal_without_acls_is_one_line_and_exit_78(
    secured: SecuredBroker, platform: Settings, command: list[str]
) -> None:
    result = run_refused(command, platform, secured.role_env("stranger"))
    assert result.returncode == EXIT_CONFIG, result.stderr[-2000:]
    lines = refusal_lines(result)
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"{REFUSAL_PREFIX}'{secured.users['stranger'].name}'")
    assert "AuthorizationFailedError" in lines[0]


def test_a_broker_certificate_the_client_does_not_trust_is_one_line_and_exit_78(
    secured: SecuredBroker, platform: Settings
) -> None:
    env = secured.role_env("speed")
    del env["LAMBDA_KAFKA_SSL_CAFILE"]  # the system's CAs: they never signed the test CA
    result = run_refused(["lambda-speed", "--no-metrics"], platform, env)
    assert result.returncode == EXIT_CONFIG, result.stderr[-2000:]
    lines = refusal_lines(result)
    assert len(lines) == 1, result.stderr[-2000:]
    assert "CERTIFICATE_VERIFY_FAILED" in lines[0]
