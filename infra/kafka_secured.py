"""A broker listener with TLS, SCRAM and the Kafka authorizer; SCRAM users; ACLs.

The settings a broker needs for a ``SASL_SSL`` listener beside its plaintext one, with Kafka's
own ``StandardAuthorizer`` on: clients of the secured listener are known SCRAM users and may do
only what an ACL grants them. The plaintext and controller listeners authenticate nobody, so
their principal (``User:ANONYMOUS``) is a super user: they are the loopback administration
path, the one the lecture's client and topic creation use. SCRAM users are written into the
KRaft metadata when storage is formatted (``kafka-storage format --add-scram``); ACLs are added
with ``kafka-acls`` (``org.apache.kafka.tools.AclCommand``) over the plaintext listener.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.kafka_tls import BrokerTls

SECURED_LISTENER = "SASL_SSL"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str
    mechanism: str = "SCRAM-SHA-512"

    def format_argument(self) -> str:
        """``--add-scram`` of ``kafka-storage format``."""
        return f"{self.mechanism}=[name={self.name},password={self.password}]"


@dataclass(frozen=True)
class Grant:
    """One ``kafka-acls --add`` allowing ``principal`` the ``operations`` on a resource."""

    principal: str
    resource: str  # kafka-acls' resource option: "topic" or "group"
    name: str
    operations: Sequence[str]

    def arguments(self) -> list[str]:
        args = ["--add", "--allow-principal", f"User:{self.principal}"]
        for operation in self.operations:
            args += ["--operation", operation]
        return [*args, f"--{self.resource}", self.name]


def secured_listener_config(
    host: str, plaintext_port: int, secured_port: int, controller_port: int, tls: BrokerTls
) -> dict[str, str]:
    """server.properties keys for PLAINTEXT + SASL_SSL (+ CONTROLLER) with the authorizer."""
    sasl = SECURED_LISTENER.lower()
    config = {
        "listeners": f"PLAINTEXT://{host}:{plaintext_port},{SECURED_LISTENER}://{host}:"
        f"{secured_port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{plaintext_port},"
        f"{SECURED_LISTENER}://{host}:{secured_port}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
        f"{SECURED_LISTENER}:{SECURED_LISTENER}",
        "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
        **tls.broker_config(f"listener.name.{sasl}."),
    }
    for mechanism in SCRAM_MECHANISMS:
        config[f"listener.name.{sasl}.{mechanism.lower()}.sasl.jaas.config"] = SCRAM_LOGIN
    return config


def speed_grants(principal: str, topic: str, dlq_topic: str, group: str) -> list[Grant]:
    """What the speed layer does: read the events, write dead letters, use its group."""
    return [
        Grant(principal, "topic", topic, ("Read", "Describe")),
        Grant(principal, "topic", dlq_topic, ("Write", "Describe")),
        Grant(principal, "group", group, ("Read", "Describe")),
    ]


def producer_grants(principal: str, topic: str) -> list[Grant]:
    """A producer of events writes the events topic, and nothing else."""
    return [Grant(principal, "topic", topic, ("Write", "Describe"))]


def reader_grants(principal: str, topic: str, dlq_topic: str, group: str) -> list[Grant]:
    """Serving's readings: the topics' offsets and the speed group's members and offsets; the
    dead letters it shows (read by a client of no group)."""
    return [
        Grant(principal, "topic", topic, ("Describe",)),
        Grant(principal, "topic", dlq_topic, ("Read", "Describe")),
        Grant(principal, "group", group, ("Describe",)),
    ]


def add_acls(
    java_base: Sequence[str],
    admin_bootstrap: str,
    grants: Iterable[Grant],
    command_config: Path | None = None,
) -> None:
    """Add each grant with Kafka's ``kafka-acls`` as a super user: over a plaintext listener,
    or with ``command_config`` (a client properties file: a secured listener's login)."""
    for grant in grants:
        cmd = [*java_base, "org.apache.kafka.tools.AclCommand"]
        cmd += ["--bootstrap-server", admin_bootstrap, *grant.arguments()]
        if command_config is not None:
            cmd += ["--command-config", str(command_config)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"kafka-acls {grant} failed: {result.stderr or result.stdout}")


def write_grants(path: Path, grants: Iterable[Grant]) -> Path:
    """Grants as JSON, for :func:`main` to apply on another host."""
    path.write_text(json.dumps([asdict(g) for g in grants]))
    return path


def main(argv: Sequence[str] = tuple(sys.argv[1:])) -> None:
    """``python -m infra.kafka_secured GRANTS.json BOOTSTRAP [COMMAND_CONFIG]``: add the
    grants of a :func:`write_grants` file (a cluster host's step: it resolves the brokers)."""
    from infra.kafka_broker import java_base
    from lambda_contracts.settings import Settings

    grants_file, bootstrap, *config = argv
    grants = [Grant(**g) for g in json.loads(Path(grants_file).read_text())]
    tool = java_base(Settings(kafka_heap="128m"))
    add_acls(tool, bootstrap, grants, Path(config[0]) if config else None)
    print(f"{len(grants)} ACL grants added")


if __name__ == "__main__":
    main()
