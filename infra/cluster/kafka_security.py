"""The cluster's Kafka with TLS and SASL between its hosts (``LAMBDA_CLUSTER_KAFKA_SECURITY``).

With ``sasl_ssl`` every connection that crosses the cluster's network is encrypted and
authenticated:

- clients and brokers meet on one ``SASL_SSL`` listener (port 9092): each platform host logs
  in as its own SCRAM-SHA-512 user, brokers replicate as ``kafka-broker``;
- the controller quorum speaks TLS with client certificates (``CONTROLLER:SSL``, port 9093):
  SCRAM credentials live in the metadata the quorum serves, so it cannot log in with them;
- Kafka's ``StandardAuthorizer`` allows each user only its ACLs (``infra.kafka_secured``'s
  grants, the same ones the single-broker tests use); the brokers, their certificates'
  subjects and ``lambda-admin`` (topic creation, ACLs, the operator's tools) are super users.

One private CA signs a keystore per broker naming the host and its address; every client
trusts the CA (``LAMBDA_KAFKA_SSL_CAFILE``). Users and passwords are made once, kept beside the
certificates (mode 0600), and written into the metadata when the brokers' storage is formatted.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infra.cluster.topology import KAFKA_HOSTS, PORTS
from infra.kafka_secured import (
    AUTHORIZER,
    SCRAM_LOGIN,
    Grant,
    ScramUser,
    producer_grants,
    reader_grants,
    speed_grants,
)
from infra.kafka_tls import BrokerTls, make_ca, make_keystore
from lambda_contracts.settings import Settings

MECHANISM = "SCRAM-SHA-512"
BROKER_USER = "kafka-broker"
ADMIN_USER = "lambda-admin"
# The SCRAM user each platform host logs in as (hosts without Kafka clients have none).
HOST_USERS = {
    "speed-1": "lambda-speed",
    "speed-2": "lambda-speed",
    "producer": "lambda-produce",
    "serving": "lambda-serve",
    "airflow": "lambda-batch",  # lambda_rebuild's re-landing reads the events topic
}


def scram_jaas(user: ScramUser) -> str:
    """The JAAS line that logs ``user`` in with SCRAM (a broker's or a Kafka tool's)."""
    return SCRAM_LOGIN.replace(
        "required;", f'required username="{user.name}" password="{user.password}";'
    )


@dataclass(frozen=True)
class ClusterKafkaSecurity:
    directory: Path  # <cluster>/kafka-security: CA, keystores, users

    @property
    def ca_pem(self) -> Path:
        return self.directory / "ca.pem"

    def users(self) -> dict[str, ScramUser]:
        """Every SCRAM user of the cluster, with a password made on first use."""
        path = self.directory / "users.json"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            names = sorted({BROKER_USER, ADMIN_USER, *HOST_USERS.values()})
            path.write_text(json.dumps({n: secrets.token_urlsafe(18) for n in names}))
            path.chmod(0o600)
        return {
            name: ScramUser(name, password, MECHANISM)
            for name, password in json.loads(path.read_text()).items()
        }

    def keystore(self, host: str, address: Callable[[str], str]) -> BrokerTls:
        """``host``'s keystore (made with every broker's on first use, by one CA)."""
        stores = self.directory / "stores.json"
        if not stores.exists():
            ca = make_ca(self.directory)
            made = {
                h: make_keystore(self.directory, ca, [h, address(h)], name=h).password
                for h in KAFKA_HOSTS
            }
            ca.key.unlink()  # nothing signs with it again
            stores.write_text(json.dumps(made))
            stores.chmod(0o600)
        password = json.loads(stores.read_text())[host]
        return BrokerTls(self.ca_pem, self.directory / f"{host}.p12", password)

    def node_properties(self, host: str, address: Callable[[str], str]) -> dict[str, str]:
        """What ``host``'s ``server.properties`` changes for TLS, SASL and the authorizer."""
        tls = self.keystore(host, address)
        broker = self.users()[BROKER_USER]
        addr = address(host)
        jaas = scram_jaas(broker)
        super_users = [BROKER_USER, ADMIN_USER, *(f"CN={h}" for h in KAFKA_HOSTS)]
        return {
            "listeners": f"SASL_SSL://{addr}:{PORTS['kafka']},"
            f"CONTROLLER://{addr}:{PORTS['kafka-controller']}",
            "advertised.listeners": f"SASL_SSL://{host}:{PORTS['kafka']}",
            "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "sasl.enabled.mechanisms": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            **tls.broker_config(),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_pem),
            # The quorum knows its voters by their certificates.
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": AUTHORIZER,
            "super.users": ";".join(f"User:{u}" for u in super_users),
            "allow.everyone.if.no.acl.found": "false",
        }

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format --add-scram`` arguments: every user."""
        return [user.format_argument() for user in self.users().values()]

    def client_fields(self, user: str) -> dict[str, object]:
        """The ``Settings`` fields of a client logging in as ``user``."""
        scram = self.users()[user]
        return {
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_plain_username": scram.name,
            "kafka_sasl_plain_password": scram.password,
            "kafka_ssl_cafile": self.ca_pem,
        }

    def client_env(self, user: str) -> dict[str, str]:
        """The same as ``LAMBDA_KAFKA_*`` variables (Settings' own naming)."""
        fields = self.client_fields(user)
        env = Settings(**fields).as_env(include_secrets=True)  # type: ignore[arg-type]
        return {k: v for k, v in env.items() if k.removeprefix("LAMBDA_").lower() in fields}

    def grants(self, settings: Settings) -> list[Grant]:
        """What each host's user may do on the platform's topics and group, and no more."""
        topic, dlq, group = settings.topic, settings.dlq_topic, settings.speed_group
        return [
            *speed_grants(HOST_USERS["speed-1"], topic, dlq, group),
            *producer_grants(HOST_USERS["producer"], topic),
            *reader_grants(HOST_USERS["serving"], topic, dlq, group),
            Grant(HOST_USERS["airflow"], "topic", topic, ("Read", "Describe")),
        ]

    def admin_properties(self) -> Path:
        """A client properties file for Kafka's own tools (kafka-acls) as ``lambda-admin``."""
        admin = self.users()[ADMIN_USER]
        jaas = scram_jaas(admin)
        path = self.directory / "admin.properties"
        path.write_text(
            "security.protocol=SASL_SSL\n"
            f"sasl.mechanism={MECHANISM}\n"
            f"sasl.jaas.config={jaas}\n"
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={self.ca_pem}\n"
        )
        path.chmod(0o600)
        return path
