"""The speed layer's metrics for the alerts: DLQ sends by reason, under-replicated partitions."""

from __future__ import annotations

import threading
from typing import Any

from kafka.errors import KafkaConnectionError

from lambda_contracts.events import parse_event
from lambda_contracts.rejects import reason_label
from lambda_contracts.settings import Settings
from speed_layer.dlq import DeadLetters
from speed_layer.metrics import SpeedMetrics
from speed_layer.replication import ReplicationWatch, under_replicated


def _sample(metrics: SpeedMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_reason_label_is_the_field_the_rejection_names() -> None:
    def reason(value: bytes) -> str:
        return parse_event(value).reason  # type: ignore[union-attr]

    assert reason_label(reason(b"\xff")) == "value"
    assert reason_label(reason(b"[1]")) == "value"
    wire = b'{"TransactionID":"t","CreatedTime":1,"SourceAccountID":"a","TargetAccountID":"b"}'
    assert reason_label(reason(wire)) == "Amount"
    assert reason_label("something: else entirely") == "other"


class _Producer:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, topic: str, **kwargs: Any) -> object:
        self.sent.append((topic, kwargs))
        return object()


def test_dead_letters_count_each_send_by_reason() -> None:
    metrics = SpeedMetrics()
    dlq = DeadLetters(_Producer(), "transactions.dlq", metrics.dlq_sent)  # type: ignore[arg-type]
    dlq.send(b"k", b"x", "value: is not valid JSON (x)", ("transactions", 0, 1, 2))
    dlq.send(b"k", b"y", "Amount: is required", ("transactions", 0, 2, 2))
    dlq.send(b"k", b"z", "Amount: must be at most 1e9", ("transactions", 0, 3, 2))
    assert _sample(metrics, "speed_dlq_sent_total", reason="value") == 1
    assert _sample(metrics, "speed_dlq_sent_total", reason="Amount") == 2


TOPICS = [
    {
        "error_code": 0,
        "topic": "transactions",
        "partitions": [
            {"partition": 0, "replicas": [1, 2, 3], "isr": [1, 2, 3]},
            {"partition": 1, "replicas": [2, 3, 1], "isr": [2, 1]},
            {"partition": 2, "replicas": [3, 1, 2], "isr": [3]},
        ],
    },
    {
        "error_code": 0,
        "topic": "transactions.dlq",
        "partitions": [{"partition": 0, "replicas": [1, 2, 3], "isr": [1, 2, 3]}],
    },
    {"error_code": 3, "topic": "missing", "partitions": []},
]


def test_under_replicated_counts_partitions_short_of_in_sync_replicas() -> None:
    assert under_replicated(TOPICS) == {"transactions": 2, "transactions.dlq": 0}


class _Admin:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.closed = False

    def describe_topics(self, topics: list[str]) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


def test_replication_watch_exports_and_survives_an_unreachable_cluster() -> None:
    metrics = SpeedMetrics()
    admins: list[_Admin] = []

    def make_admin() -> _Admin:
        admins.append(_Admin([TOPICS, KafkaConnectionError("down")] if not admins else [TOPICS]))
        return admins[-1]

    watch = ReplicationWatch(Settings(), metrics, threading.Event(), 0, admin=make_admin)
    watch.check()
    assert _sample(metrics, "speed_kafka_under_replicated_partitions", topic="transactions") == 2
    watch.check()  # no answer: the last value stays, the error is counted, the client closed
    assert _sample(metrics, "speed_kafka_errors_total", operation="describe_topics") == 1
    assert admins[0].closed
    watch.check()  # a fresh client next time
    assert len(admins) == 2
    assert _sample(metrics, "speed_kafka_under_replicated_partitions", topic="transactions") == 2
