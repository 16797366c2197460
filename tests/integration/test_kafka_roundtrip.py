"""Against the real broker: keyed produce/consume, partitioning, LogAppendTime, topic setup."""

from __future__ import annotations

from collections import defaultdict

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaTimeoutError
from kafka.partitioner.default import murmur2

from infra.topics import TopicMismatchError, ensure_topics, topic_configs
from producer.cli import make_producer

pytestmark = pytest.mark.integration

# Java's Utils.murmur2 on these keys (Kafka's own UtilsTest vectors), as signed ints.
JAVA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "abc": 479470107,
}


def java_default_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_client_hash_is_javas_murmur2() -> None:
    for key, signed in JAVA_MURMUR2.items():
        assert murmur2(key.encode()) & 0xFFFFFFFF == signed & 0xFFFFFFFF


def test_keyed_events_round_trip_in_per_key_order(make_settings) -> None:
    settings = make_settings()
    producer = make_producer(settings.kafka_client_config)
    keys = [f"acct-{i}".encode() for i in range(37)]
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    for n in range(2000):
        key = keys[(n * 7) % len(keys)]
        value = f'{{"n": {n}}}'.encode()
        producer.send(settings.topic, key=key, value=value)
        sent[key].append(value)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        settings.topic,
        **settings.kafka_client_config,
        group_id="roundtrip",
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    received: dict[bytes, list[bytes]] = defaultdict(list)
    for record in consumer:
        received[record.key].append(record.value)
        assert record.partition == java_default_partition(record.key, settings.partitions)
        assert record.timestamp_type == 1, "transactions topic must stamp LogAppendTime"
    consumer.close()
    assert received == sent


def test_topics_are_created_once_with_their_definition(make_settings) -> None:
    settings = make_settings(create_topics=False, partitions=6)
    assert sorted(ensure_topics(settings)) == sorted([settings.topic, settings.dlq_topic])
    assert ensure_topics(settings) == []  # idempotent
    admin = KafkaAdminClient(**settings.kafka_admin_config)
    try:
        topics = admin.describe_topics([settings.topic, settings.dlq_topic])
        configs = topic_configs(admin, settings.topic)
    finally:
        admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in topics} == {
        settings.topic: 6,
        settings.dlq_topic: 1,
    }
    assert configs["message.timestamp.type"] == "LogAppendTime"
    assert configs["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert configs["min.insync.replicas"] == str(settings.min_insync_replicas)
    assert configs["unclean.leader.election.enable"] == "false"


@pytest.mark.parametrize(
    ("partitions", "configs", "complaint"),
    [
        (6, {"message.timestamp.type": "LogAppendTime"}, "6 partitions, declared 4"),
        (4, {"message.timestamp.type": "CreateTime"}, "message.timestamp.type=CreateTime"),
    ],
)
def test_an_existing_topic_that_contradicts_the_definition_is_refused(
    make_settings, partitions: int, configs: dict[str, str], complaint: str
) -> None:
    settings = make_settings(create_topics=False, partitions=4)
    admin = KafkaAdminClient(**settings.kafka_admin_config)
    try:
        admin.create_topics([NewTopic(settings.topic, partitions, 1, topic_configs=configs)])
    finally:
        admin.close()
    with pytest.raises(TopicMismatchError, match=complaint):
        ensure_topics(settings)


def test_a_platform_client_never_creates_a_topic_by_asking_about_it(make_settings) -> None:
    """The test broker auto-creates topics (for the lecture's examples); a lag reader or a
    producer of the platform asking about a missing topic must still not make it, with one
    partition and CreateTime, ahead of the topics job."""
    settings = make_settings(create_topics=False)
    consumer = KafkaConsumer(**settings.kafka_client_config, request_timeout_ms=5000)
    producer = make_producer(settings.kafka_client_config, max_block_ms=3000)
    try:
        with pytest.raises(KafkaTimeoutError):  # kafka-python's default would create it
            consumer.end_offsets([TopicPartition(settings.topic, 0)])
        with pytest.raises(KafkaTimeoutError):
            producer.send(settings.topic, b"{}").get(timeout=5)
    finally:
        consumer.close()
        producer.close(timeout=5)
    admin = KafkaAdminClient(**settings.kafka_admin_config)
    try:
        assert settings.topic not in admin.list_topics()
    finally:
        admin.close()
