"""Create the platform's topics idempotently from their one definition, and refuse an existing
topic that contradicts it (a CreateTime topic would put ingest buckets on producers' clocks; a
different partition count breaks the landing watermark's "every partition" rule)."""

from __future__ import annotations

import time

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from lambda_contracts.settings import Settings
from lambda_contracts.topics import TopicSpec, platform_topics

# Settings whose value changes what the platform computes or promises (ingest time, what an
# acknowledgement means); others (retention) may differ.
BINDING_CONFIGS = (
    "message.timestamp.type",
    "min.insync.replicas",
    "unclean.leader.election.enable",
)


class TopicMismatchError(RuntimeError):
    """An existing topic does not match the platform's definition of it."""


def admin_client(settings: Settings, timeout_s: float = 30.0) -> KafkaAdminClient:
    """An admin client, retried until the broker answers or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(**settings.kafka_admin_config, client_id="lambda-infra")
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics (existing ones are left as they are); return the names created."""
    admin = admin_client(settings)
    try:
        _wait_for_brokers(admin, max(s.replication_factor for s in platform_topics(settings)))
        existing = set(admin.list_topics())
        created = []
        for spec in platform_topics(settings):
            if spec.name in existing:
                continue
            topic = NewTopic(
                spec.name, spec.partitions, spec.replication_factor, topic_configs=spec.configs
            )
            try:
                admin.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        _wait_until_led(admin, [s.name for s in platform_topics(settings)])
        for spec in platform_topics(settings):
            check_topic(admin, spec)
        return created
    finally:
        admin.close()


def topic_configs(admin: KafkaAdminClient, name: str) -> dict[str, str]:
    """The topic's effective configuration, name -> value."""
    responses = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    configs: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:  # (name, value, read_only, source, sensitive, synonyms)
                configs[entry[0]] = entry[1]
    return configs


def check_topic(admin: KafkaAdminClient, spec: TopicSpec) -> None:
    """Raise TopicMismatchError, saying what differs and how to fix it, unless the topic has
    the declared partition count and binding configs."""
    described = admin.describe_topics([spec.name])
    layout = described[0]["partitions"] if described else []
    problems = []
    if len(layout) != spec.partitions:
        problems.append(f"{len(layout)} partitions, declared {spec.partitions} (LAMBDA_PARTITIONS)")
    replicas = min((len(p["replicas"]) for p in layout), default=0)
    if layout and replicas != spec.replication_factor:
        problems.append(
            f"replication factor {replicas}, declared {spec.replication_factor} "
            "(LAMBDA_REPLICATION_FACTOR)"
        )
    actual = topic_configs(admin, spec.name)
    for key in BINDING_CONFIGS:
        if key in spec.configs and actual.get(key) != spec.configs[key]:
            problems.append(f"{key}={actual.get(key)}, declared {spec.configs[key]}")
    if problems:
        raise TopicMismatchError(
            f"topic {spec.name!r} exists with " + "; ".join(problems) + ". Set the platform's "
            "settings to match it, or recreate the topic (kafka-topics.sh --delete)."
        )


def _wait_for_brokers(admin: KafkaAdminClient, count: int, timeout_s: float = 90.0) -> None:
    """Wait until ``count`` brokers have joined: a topic of replication factor 3 cannot be
    created while the cluster's other brokers are still starting."""
    deadline = time.monotonic() + timeout_s
    while len(admin.describe_cluster()["brokers"]) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} brokers joined the cluster in {timeout_s:.0f}s")
        time.sleep(0.5)


def _wait_until_led(admin: KafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """Return once every partition of the topics has a leader, so clients that start right
    after see them in their first metadata (a consumer that misses a new topic may wait for
    its next metadata refresh)."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = admin.describe_topics(names)
        if all(
            t["partitions"]
            and all(p["leader"] >= 0 and p["error_code"] == 0 for p in t["partitions"])
            for t in described
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {names} have partitions without a leader")
        time.sleep(0.2)


if __name__ == "__main__":
    from lambda_contracts.settings import get_settings

    try:
        created = ensure_topics(get_settings())
    except TopicMismatchError as exc:
        raise SystemExit(f"topic mismatch: {exc}") from exc
    print("created:", ", ".join(created) or "nothing (all exist)")
