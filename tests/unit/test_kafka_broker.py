"""The local broker's own set-up logic."""

from __future__ import annotations

from infra.kafka_broker import new_cluster_id


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    """kafka-storage format reads an id starting with '-' as a flag (1 in 64 random ids)."""
    ids = [new_cluster_id() for _ in range(5000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
