"""The topics of the platform, defined once; ``infra`` creates them idempotently at start."""

from __future__ import annotations

from dataclasses import dataclass, field

from lambda_contracts.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    configs: dict[str, str] = field(default_factory=dict)


def platform_topics(settings: Settings) -> list[TopicSpec]:
    durability = {
        "retention.ms": str(settings.retention_ms),
        # An acknowledged record is on this many replicas; a lagging replica never becomes
        # leader (that would drop acknowledged records).
        "min.insync.replicas": str(settings.min_insync_replicas),
        "unclean.leader.election.enable": "false",
    }
    return [
        TopicSpec(
            settings.topic,
            settings.partitions,
            settings.replication_factor,
            {
                **durability,
                # The broker stamps each record: ingest buckets are then fixed and monotonic.
                "message.timestamp.type": "LogAppendTime",
            },
        ),
        TopicSpec(settings.dlq_topic, 1, settings.replication_factor, durability),
    ]
