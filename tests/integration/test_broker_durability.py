"""A broker restart keeps acknowledged events; a producer across an outage loses or doubles none."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from infra.local_broker import Broker, start_broker
from infra.topics import ensure_topics
from lambda_contracts.settings import Settings
from producer.cli import make_producer
from tests.support import ports
from tests.support.pipeline import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory):
    broker = start_broker(tmp_path_factory.mktemp("kafka-durability"), *ports.DURABILITY_BROKER)
    yield broker
    broker.stop()


def _topic_settings(broker: Broker, name: str) -> Settings:
    settings = broker.settings.model_copy(update={"topic": name, "dlq_topic": f"{name}.dlq"})
    ensure_topics(settings)
    return settings


def test_events_survive_a_broker_restart(own_broker: Broker) -> None:
    settings = _topic_settings(own_broker, "restart")
    producer = make_producer(settings.kafka_client_config)
    for i in range(1000):
        producer.send(settings.topic, key=str(i % 10).encode(), value=str(i).encode())
    producer.flush()
    producer.close()

    own_broker.stop()
    own_broker.start()

    values = sorted(int(r.value) for r in read_topic(settings, settings.topic))
    assert values == list(range(1000))


def test_producer_across_an_outage_loses_and_duplicates_nothing(own_broker: Broker) -> None:
    settings = _topic_settings(own_broker, "outage")
    producer = make_producer(settings.kafka_client_config, delivery_timeout_ms=120_000)
    total = 3000
    failures: list[Exception] = []

    def send_all() -> None:
        for i in range(total):
            future = producer.send(settings.topic, key=str(i % 13).encode(), value=str(i).encode())
            future.add_errback(failures.append)
            time.sleep(0.002)
        producer.flush()

    sender = threading.Thread(target=send_all)
    sender.start()
    time.sleep(1.5)
    own_broker.stop()  # outage while the producer keeps sending
    time.sleep(3)
    own_broker.start()
    sender.join(timeout=180)
    producer.close()
    assert not sender.is_alive()
    assert failures == []

    counts = Counter(int(r.value) for r in read_topic(settings, settings.topic, timeout_ms=8000))
    assert set(counts) == set(range(total)), "lost events"
    assert max(counts.values()) == 1, "duplicated events"
