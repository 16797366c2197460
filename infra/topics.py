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
        _wait_until_led(admin, [s.name for s in platform_topics(settings)])
        return created
    finally:
        admin.close()


def _wait_until_led(admin: KafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """Return once every partition of the topics has a leader, so clients that start right
    after see them in their first metadata (a consumer that misses a new topic may wait for
    its next metadata refresh)."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = admin.describe_topics(names)
        if all(
            t["partitions"]
            and all(p["leader_id"] >= 0 and p["error_code"] == 0 for p in t["partitions"])
            for t in described
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {names} have partitions without a leader")
        time.sleep(0.2)


if __name__ == "__main__":
    from lambda_contracts.settings import get_settings

    print("created:", ", ".join(ensure_topics(get_settings())) or "nothing (all exist)")
