"""The topics of the platform, defined once; ``infra`` creates them idempotently at start."""

from __future__ import annotations

from dataclasses import dataclass, field

from lambda_contracts.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def platform_topics(settings: Settings) -> list[TopicSpec]:
    retention = str(settings.retention_ms)
    return [
        TopicSpec(
            settings.topic,
            settings.partitions,
            {
                "retention.ms": retention,
                # The broker stamps each record: ingest buckets are then fixed and monotonic.
                "message.timestamp.type": "LogAppendTime",
            },
        ),
        TopicSpec(settings.dlq_topic, 1, {"retention.ms": retention}),
    ]
