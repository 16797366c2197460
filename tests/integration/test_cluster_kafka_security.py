"""The cluster's Kafka with ``LAMBDA_CLUSTER_KAFKA_SECURITY=sasl_ssl``: three brokers on their
own hosts, replicating over SASL_SSL and forming their quorum over mutual TLS, each platform
host logging in as its own user with only its ACLs, and no way in without a login.

Only the Kafka part of the cluster runs (the brokers, the topics step and the ACL step), and
clients run on the hosts the platform's services run on, with those hosts' environment.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.cluster import netns
from infra.cluster.cli import kafka_report
from infra.cluster.kafka_security import HOST_USERS
from infra.cluster.services import Cluster, Step
from infra.cluster.topology import KAFKA_HOSTS, Network
from infra.supervisor import ServiceError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="hosts are network namespaces"
    ),
]

NET = Network(prefix="lks-", subnet="10.213.83.0/24")
CLIENT_HOSTS = ("producer", "speed-1", "serving")

PRODUCE = """
from kafka import KafkaProducer
from lambda_contracts.settings import Settings
s = Settings()
producer = KafkaProducer(**s.kafka_client_config, acks="all", enable_idempotence=True)
for i in range(40):
    producer.send(s.topic, key=b"k%d" % i, value=b'{"n": %d}' % i)
producer.flush(60)
producer.close()
print("sent 40")
"""

# As the speed layer: read the events in its group; writing them is not its to do.
READ_THEN_WRITE = """
import json
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from lambda_contracts.settings import Settings
s = Settings()
consumer = KafkaConsumer(s.topic, group_id=s.speed_group, auto_offset_reset="earliest",
                         enable_auto_commit=False, **s.kafka_client_config)
seen, read = 0, "read"
try:
    for _ in range(60):
        seen += sum(len(r) for r in consumer.poll(timeout_ms=1000).values())
        if seen >= 40:
            break
except KafkaError as exc:
    read = type(exc).__name__
consumer.close()
try:
    producer = KafkaProducer(**s.kafka_client_config, max_block_ms=20000)
    producer.send(s.topic, b"intruder").get(timeout=20)
    wrote = "written"
except KafkaError as exc:
    wrote = type(exc).__name__
print(json.dumps({"seen": seen, "read": read, "write": wrote}))
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    netns.down(NET)  # a leftover of an interrupted run
    cluster = Cluster.of(tmp_path, NET, kafka_security=True)
    netns.up(NET, [*KAFKA_HOSTS, *CLIENT_HOSTS])
    sup = cluster.supervisor
    try:
        brokers = [cluster.kafka(h) for h in KAFKA_HOSTS]
        for broker in brokers:
            sup.spawn(broker)
        for broker in brokers:
            sup.wait_healthy(broker)
        for step in cluster.stages(demo=False):
            if isinstance(step, Step) and step.name in ("topics", "kafka-acls"):
                cluster.run_step(step)
        yield cluster
    finally:
        for host in KAFKA_HOSTS:
            sup.stop(host)
        netns.down(NET)


def on(cluster: Cluster, host: str, code: str, **env: str) -> str:
    return cluster.run_step(
        Step(f"client-{host}", host, [sys.executable, "-c", code], 120, (), env)
    )


def test_every_host_logs_in_as_its_own_user_with_only_its_acls(cluster: Cluster) -> None:
    config = (cluster.root / "kafka-1" / "kafka" / "server.properties").read_text()
    assert "listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL" in config
    assert "PLAINTEXT://" not in config

    assert "sent 40" in on(cluster, "producer", PRODUCE)
    # Replication runs over the brokers' SASL_SSL listener (acks=all needed it): every replica
    # of the topics (made with 3) is in sync, as `cluster status` reads it, as the admin.
    assert kafka_report(cluster) == {"brokers": [1, 2, 3], "under_replicated": []}

    speed = json.loads(on(cluster, "speed-1", READ_THEN_WRITE).splitlines()[-1])
    assert speed == {"seen": 40, "read": "read", "write": "TopicAuthorizationFailedError"}
    # Serving reads offsets and the dead letters, not the events (nor joins the group).
    serving = json.loads(on(cluster, "serving", READ_THEN_WRITE).splitlines()[-1])
    assert serving["seen"] == 0 and serving["read"].endswith("AuthorizationFailedError")
    assert serving["write"] == "TopicAuthorizationFailedError"

    # A wrong password: refused in one line, and not retried (exit 78).
    wrong = {"LAMBDA_KAFKA_SASL_PLAIN_PASSWORD": "not-the-password"}
    produce = ["lambda-produce", "--count", "1", "--quiet"]
    with pytest.raises(ServiceError) as refused:
        cluster.run_step(Step("refused", "producer", produce, 120, (), wrong))
    message = str(refused.value)
    assert "failed (78)" in message, message
    assert f"error: Kafka access refused for user '{HOST_USERS['producer']}'" in message
