"""``lambda-speed reset-offsets``: make the speed layer's cursors agree with the log again.

A speed process halts a partition whose log contradicts its stored offsets (topic deleted and
recreated, log truncated, records expired before they were counted) rather than skip or
double-count silently. The operator decides where reading resumes — the log's beginning, its
end, or an offset — and this command moves both cursors there: the store's next offset (in one
transaction that also lifts the recorded halt), the landing progress's next offset (its
sealed time is kept: sealed buckets stay sealed) and the group's committed offset in Kafka
(lag tools read it, and so does the speed layer's check that retention removed nothing unread:
a stale, higher committed offset would vouch for records never read).

The speed processes must be stopped first: a running one holds its cursors in memory and would
write them back. The command refuses while the consumer group has members.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from lambda_contracts.layout import Layout, PartitionProgress
from lambda_contracts.settings import Settings
from speed_layer.store import SpeedStore

COORDINATOR_WAIT_S = 30  # a group coordinator that is not up yet (a fresh broker) answers soon
STOP_FIRST = (
    "Stop every speed process of the group first (make down, or stop the speed services / "
    "docker compose stop speed): a running process would write its old cursors back."
)


class ResetRefused(RuntimeError):
    """The reset cannot be done safely as asked; the message says why and what to do."""


class Target(StrEnum):
    BEGINNING = "beginning"
    END = "end"
    OFFSET = "offset"


@dataclass(frozen=True)
class OffsetChange:
    partition: int
    stored: int | None  # the store's next offset before (None: never counted)
    landed: int | None  # the landing progress's next offset before (None: never landed)
    new: int

    def describe(self) -> str:
        return (
            f"partition {self.partition}: stored {_show(self.stored)} → {self.new}, "
            f"landed {_show(self.landed)} → {self.new}"
        )


def _show(offset: int | None) -> str:
    return "none" if offset is None else str(offset)


def group_members(settings: Settings) -> list[str]:
    """Client ids of the speed consumer group's live members (empty when none is running)."""
    admin = KafkaAdminClient(**settings.kafka_admin_config, client_id="lambda-speed-reset")
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    try:
        while True:
            try:
                groups = admin.describe_consumer_groups([settings.speed_group])
                break
            except KafkaError as exc:  # the coordinator moves or is not up yet: transient
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()
    return [member.client_id for group in groups for member in group.members]


def log_bounds(settings: Settings, partitions: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Each partition's log start and end offsets, from the broker.

    The end is the one the speed processes stop at: they read committed records only, so an
    open transaction holds their end at its first record (the last stable offset), below the
    high watermark. Reset to the high watermark, they would find their stored offset past
    the log's end and halt again, and would skip the open transaction's records once it
    commits."""
    consumer = KafkaConsumer(**settings.kafka_client_config, isolation_level="read_committed")
    try:
        tps = [TopicPartition(settings.topic, p) for p in partitions]
        starts = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    return (
        {tp.partition: o for tp, o in starts.items()},
        {tp.partition: o for tp, o in ends.items()},
    )


def targets_for(
    partitions: list[int],
    starts: dict[int, int],
    ends: dict[int, int],
    target: Target,
    offset: int | None = None,
) -> dict[int, int]:
    """The offset each partition resumes at; an explicit offset must lie within the log,
    or the next process would halt again (or skip)."""
    if target is Target.BEGINNING:
        return {p: starts[p] for p in partitions}
    if target is Target.END:
        return {p: ends[p] for p in partitions}
    assert offset is not None
    outside = [p for p in partitions if not starts[p] <= offset <= ends[p]]
    if outside:
        bounds = ", ".join(f"{p}: [{starts[p]}, {ends[p]}]" for p in outside)
        raise ResetRefused(f"offset {offset} is outside the log of partition(s) {bounds}")
    return {p: offset for p in partitions}


def commit_group_offsets(settings: Settings, targets: dict[int, int]) -> None:
    """Set the speed group's committed offsets to ``targets`` (the group must be empty)."""
    consumer = KafkaConsumer(
        **settings.kafka_client_config,
        group_id=settings.speed_group,
        enable_auto_commit=False,
    )
    try:
        tps = {p: TopicPartition(settings.topic, p) for p in targets}
        consumer.assign(list(tps.values()))
        consumer.commit({tps[p]: OffsetAndMetadata(o, "", -1) for p, o in targets.items()})
    finally:
        consumer.close(autocommit=False)


def apply_reset(store: SpeedStore, layout: Layout, targets: dict[int, int]) -> list[OffsetChange]:
    """Move the store's offsets (one transaction), then the landing progress, to ``targets``.

    The landing progress is a file per partition, outside the transaction: if writing it
    fails after the store committed, running the same command again completes the reset (it
    sets the same values; until then a speed process halts on the disagreement). The Kafka
    commit (:func:`commit_group_offsets`) follows, by the caller, for the same reason.
    """
    landed_before = {p: layout.read_progress(p) for p in targets}
    stored_before = store.reset_offsets(targets)
    changes = []
    for partition, offset in sorted(targets.items()):
        before = landed_before[partition]
        sealed = before.sealed_through_ms if before is not None else 0
        layout.write_progress(PartitionProgress(partition, offset, sealed))
        changes.append(
            OffsetChange(
                partition,
                stored_before[partition],
                before.next_offset if before is not None else None,
                offset,
            )
        )
    return changes
