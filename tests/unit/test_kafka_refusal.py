"""How a broker's refusal reads: one line naming the client and the broker's reason."""

from __future__ import annotations

import ssl

from kafka.errors import GroupAuthorizationFailedError, KafkaConnectionError

from lambda_contracts.kafka_access import _first_refusal, check_kafka_access, refusal_line
from lambda_contracts.settings_kafka import KafkaSettings


def scram(**more: object) -> KafkaSettings:
    values: dict[str, object] = {
        "kafka_bootstrap": "broker-1:9096,broker-2:9096",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_plain_username": "speed",
        "kafka_sasl_plain_password": "secret-password",
    }
    return KafkaSettings(**{**values, **more})


def test_the_line_names_user_protocol_broker_and_reason_once_and_no_password() -> None:
    line = refusal_line(scram(), GroupAuthorizationFailedError("speed-group"))
    assert line == (
        "error: Kafka access refused for user 'speed' over SASL_SSL to broker-1:9096: "
        "[Error 30] GroupAuthorizationFailedError: speed-group"
    )
    assert "\n" not in line and "secret-password" not in line


def test_a_plaintext_client_has_no_user_to_name() -> None:
    line = refusal_line(KafkaSettings(), ValueError("x"))
    assert line == "error: Kafka access refused for PLAINTEXT to 127.0.0.1:9092: ValueError: x"


def test_only_refusals_count_not_a_broker_that_is_down() -> None:
    down = KafkaConnectionError("111 ECONNREFUSED")
    untrusted = KafkaConnectionError(ssl.SSLCertVerificationError("certificate verify failed"))
    assert _first_refusal([down]) is None
    assert _first_refusal([down, untrusted]) is untrusted
    denied = GroupAuthorizationFailedError("g")
    assert _first_refusal([denied]) is denied


def test_plaintext_needs_no_check_and_an_absent_broker_is_left_to_the_retries() -> None:
    check_kafka_access(KafkaSettings(kafka_bootstrap="127.0.0.1:1"))  # plaintext: no probe
    check_kafka_access(scram(kafka_bootstrap="127.0.0.1:1"), timeout_s=2)  # down, not refused
