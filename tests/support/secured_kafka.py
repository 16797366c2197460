"""A private broker with a SASL_SSL listener, the authorizer on, and one SCRAM user per role.

Certificates come from openssl and keytool, users from ``kafka-storage format --add-scram``,
ACLs from ``kafka-acls`` (``infra.kafka_tls``, ``infra.kafka_secured``): what an operator does
for a secured cluster. Each role's client settings reach the platform's processes as
``LAMBDA_KAFKA_*`` variables, through the listener a managed Kafka would offer.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.kafka_broker import java_base
from infra.kafka_secured import (
    Grant,
    ScramUser,
    add_acls,
    producer_grants,
    reader_grants,
    secured_listener_config,
    speed_grants,
)
from infra.kafka_tls import BrokerTls, make_broker_tls
from infra.local_broker import Broker, start_broker
from lambda_contracts.settings import Settings

ROLES = ("speed", "producer", "serving", "stranger")  # the stranger is granted nothing


@dataclass
class SecuredBroker:
    broker: Broker
    tls: BrokerTls
    secured_bootstrap: str
    users: dict[str, ScramUser] = field(default_factory=dict)

    def client_settings(self, role: str, password: str | None = None) -> dict[str, Any]:
        """Settings fields for a client of ``role`` on the SASL_SSL listener (``password``:
        another one than the user's, to be refused)."""
        user = self.users[role]
        return {
            "kafka_bootstrap": self.secured_bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": user.mechanism,
            "kafka_sasl_plain_username": user.name,
            "kafka_sasl_plain_password": password if password is not None else user.password,
            "kafka_ssl_cafile": self.tls.ca_pem,
        }

    def role_env(self, role: str, password: str | None = None) -> dict[str, str]:
        """The same as ``LAMBDA_KAFKA_*`` variables, for a platform process of ``role``."""
        fields = self.client_settings(role, password)
        env = Settings(**fields).as_env(include_secrets=True)  # the one naming rule
        return {k: v for k, v in env.items() if k.removeprefix("LAMBDA_").lower() in fields}

    def role_settings(self, base: Settings, role: str, password: str | None = None) -> Settings:
        """``base`` (topics, group, data) as a client of ``role`` on the secured listener."""
        return Settings(**{**base.model_dump(), **self.client_settings(role, password)})

    def grant(self, grants: list[Grant]) -> None:
        add_acls(java_base(self.broker.settings), self.broker.settings.kafka_bootstrap, grants)

    def grant_platform(self, settings: Settings) -> None:
        """Each role what it needs on ``settings``'s topics and group, and no more."""
        topic, dlq, group = settings.topic, settings.dlq_topic, settings.speed_group
        self.grant(
            speed_grants(self.users["speed"].name, topic, dlq, group)
            + producer_grants(self.users["producer"].name, topic)
            + reader_grants(self.users["serving"].name, topic, dlq, group)
        )

    def stop(self) -> None:
        self.broker.stop()


def start_secured_broker(directory: Path, ports: tuple[int, int, int]) -> SecuredBroker:
    plaintext, secured, controller = ports
    tls = make_broker_tls(directory / "tls", ["127.0.0.1", "localhost"])
    users = {role: ScramUser(f"lambda-{role}", secrets.token_urlsafe(16)) for role in ROLES}
    node = secured_listener_config("127.0.0.1", plaintext, secured, controller, tls)
    broker = start_broker(
        directory / "kafka",
        plaintext,
        controller,
        node=node,
        scram=[user.format_argument() for user in users.values()],
        more_ports=(secured,),
    )
    return SecuredBroker(broker, tls, f"127.0.0.1:{secured}", users)
