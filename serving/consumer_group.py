"""The speed layer's consumer group as the broker describes it, for the dashboard's group panel:
its state, its members and the partitions each owns.

One lazily created admin client behind a lock, as :mod:`serving.kafka_lag` keeps its consumer;
a broker that cannot be reached makes the group unknown (None) rather than failing the request.
The app reads it through a :class:`~serving.snapshot_cache.Refreshed`: requests get the last
reading at once while the next is taken.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from lambda_contracts.settings import Settings


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    partitions: tuple[int, ...]  # of the transactions topic


@dataclass(frozen=True)
class GroupReading:
    state: str  # the broker's: Stable, PreparingRebalance, CompletingRebalance, Empty, Dead
    members: tuple[Member, ...]


class ConsumerGroup:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()

    def describe(self) -> GroupReading | None:
        """The group as the broker describes it now (None if Kafka did not answer)."""
        with self._lock:
            return self._describe()

    def _describe(self) -> GroupReading | None:
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    **self.settings.kafka_admin_config,
                    client_id="lambda-serving-group",
                    request_timeout_ms=3000,
                )
            (described,) = self._admin.describe_consumer_groups([self.settings.speed_group])
        except (KafkaError, AssertionError, OSError, ValueError):
            self._close_unlocked()
            return None
        return GroupReading(
            described.state,
            tuple(sorted((self._member(m) for m in described.members), key=_by_partitions)),
        )

    def _member(self, member: Any) -> Member:
        """A member, its assignment decoded by kafka-python (None while it has none)."""
        assigned = member.member_assignment
        owned = (
            (p for topic, ps in assigned.assignment if topic == self.settings.topic for p in ps)
            if assigned
            else ()
        )
        return Member(member.member_id, member.client_id, member.client_host, tuple(sorted(owned)))

    def _close_unlocked(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            finally:
                self._admin = None

    def close(self) -> None:
        with self._lock:
            self._close_unlocked()


def _by_partitions(member: Member) -> tuple[tuple[int, ...], str]:
    return member.partitions or (1 << 31,), member.client_id


def partition_state(
    halted: bool, lag: int | None, updated_at_ms: int, now_ms: int, stall_ms: int
) -> str:
    """``halted`` (a record it cannot pass: an operator must act), ``stalled`` (records
    waiting and no progress for ``stall_ms``, the speed layer's own unhealthy bound), else
    ``ok``. An unknown lag (no broker) is not a stall."""
    if halted:
        return "halted"
    if lag and now_ms - updated_at_ms >= stall_ms:
        return "stalled"
    return "ok"
