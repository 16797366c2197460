"""Create the platform's topics idempotently from their one definition."""

from __future__ import annotations

import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from lambda_contracts.settings import Settings
from lambda_contracts.topics import platform_topics


def admin_client(settings: Settings, timeout_s: float = 30.0) -> KafkaAdminClient:
    """An admin client, retried until the broker answers or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(
                bootstrap_servers=settings.bootstrap_servers, client_id="lambda-infra"
            )
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics (existing ones are left as they are); return the names created."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        created = []
        for spec in platform_topics(settings):
            if spec.name in existing:
                continue
            topic = NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.configs)
            try:
                admin.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


if __name__ == "__main__":
    from lambda_contracts.settings import get_settings

    print("created:", ", ".join(ensure_topics(get_settings())) or "nothing (all exist)")
