"""Settings on the test broker with a topic, DLQ and consumer group of their own."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from infra.local_broker import Broker
from infra.topics import ensure_topics
from lambda_contracts.settings import Settings


def fresh_settings(
    broker: Broker, data_dir: Path, create_topics: bool = True, **overrides: Any
) -> Settings:
    """Settings with a fresh topic, DLQ and group on ``broker`` (created unless told not to)
    and their data under ``data_dir``; ``overrides`` set any other field."""
    suffix = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "kafka_bootstrap": broker.settings.kafka_bootstrap,
        "topic": f"tx-{suffix}",
        "dlq_topic": f"tx-{suffix}.dlq",
        "speed_group": f"speed-{suffix}",
        "speed_metrics_port": 0,
        **overrides,
    }
    settings = Settings(**values)
    if create_topics:
        ensure_topics(settings)
    return settings
