"""How the platform reaches Kafka: the brokers, the topics, and the clients' security.

Every Kafka client of the platform (speed layer, producer, serving's lag reader, topic
administration, re-landing, benchmarks and fault runs) is built from
:attr:`KafkaSettings.kafka_client_config`, so one set of ``LAMBDA_KAFKA_*`` settings, named
as kafka-python names them, secures them all: TLS, SASL (PLAIN or SCRAM) or both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from lambda_contracts.settings_base import SettingsGroup

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(SettingsGroup):
    """The Kafka brokers and the topics of payment events."""

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        description="Kafka bootstrap servers, comma-separated; the local broker listens on the "
        "first",
    )
    kafka_controller_port: int = Field(
        default=9093, description="KRaft controller port of the local broker"
    )
    kafka_heap: str = Field(
        default="512m", description="heap (-Xms and -Xmx) of each Kafka broker the platform starts"
    )
    topic: str = Field(default="transactions", description="the topic of payment events")
    dlq_topic: str = Field(
        default="transactions.dlq", description="dead-letter topic (one partition)"
    )
    partitions: int = Field(
        default=4,
        ge=1,
        description="partitions of the events topic; an existing topic with another count is "
        "refused",
    )
    replication_factor: int = Field(
        default=1, ge=1, description="replicas of both topics; 3 on a real cluster"
    )
    min_insync_replicas: int = Field(
        default=1, ge=1, description="acks=all waits for this many replicas (2 with RF 3)"
    )
    retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000, description="retention.ms of both topics (7 days)"
    )

    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="how every client talks to the brokers: PLAINTEXT, SSL, SASL_PLAINTEXT or "
        "SASL_SSL (kafka-python's security_protocol; SASL_SSL for MSK or Confluent Cloud)",
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; needed by the SASL protocols",
    )
    kafka_sasl_plain_username: str | None = Field(
        default=None, description="SASL user name (kafka-python's sasl_plain_username)"
    )
    kafka_sasl_plain_password: SecretStr | None = Field(
        default=None, description="SASL password (kafka-python's sasl_plain_password)"
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="CA certificates (PEM) the brokers' certificates are checked against; "
        "unset: the system's",
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="client certificate (PEM), for mutual TLS"
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="the client certificate's private key (PEM), for mutual TLS"
    )

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        """A protocol without what it needs is refused at start-up, not by the broker later."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and (
            self.kafka_sasl_mechanism is None
            or not self.kafka_sasl_plain_username
            or self.kafka_sasl_plain_password is None
        ):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs "
                "kafka_sasl_mechanism, kafka_sasl_plain_username and kafka_sasl_plain_password"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together (mutual TLS)")
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]

    @property
    def kafka_client_config(self) -> dict[str, Any]:
        """The keyword arguments every kafka-python consumer and producer of the platform
        starts from: :attr:`kafka_admin_config`, and never creating a topic by asking about
        it (kafka-python's default would: a lag query before the topics exist would make
        ``transactions`` with one partition and CreateTime, which the platform then refuses)."""
        return {**self.kafka_admin_config, "allow_auto_create_topics": False}

    @property
    def kafka_admin_config(self) -> dict[str, Any]:
        """What an admin client starts from (it takes no ``allow_auto_create_topics``): the
        brokers and the security settings (only those that are set)."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL_"):
            assert self.kafka_sasl_plain_password is not None  # checked at start-up
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_plain_username
            config["sasl_plain_password"] = self.kafka_sasl_plain_password.get_secret_value()
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                value = getattr(self, f"kafka_{key}")
                if value is not None:
                    config[key] = str(value)
        return config
