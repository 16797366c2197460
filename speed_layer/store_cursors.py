"""The speed store's partition records: each partition's stored offset, its halt, the reset.

The apply transaction moves the offsets (:class:`speed_layer.store.SpeedStore`); here they are
read on assignment, a halt is recorded for whichever process takes the partition next, and the
operator's ``reset-offsets`` moves every cursor and lifts the halts.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, delete, select, update

from lambda_contracts.store_schema import partition_halts, partition_state
from speed_layer.store_retry import retry_transient
from speed_layer.store_sql import dialect_insert


class PartitionCursors:
    """One topic's rows of ``speed_partition_state`` and ``speed_partition_halts``."""

    def __init__(self, engine: Engine, topic: str) -> None:
        self.engine = engine
        self.topic = topic

    def load_offsets(self) -> dict[int, int]:
        """Each partition's next offset whose effect is not in the store yet."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(partition_state.c.kafka_partition, partition_state.c.next_offset).where(
                    partition_state.c.topic == self.topic
                )
            )
            return {p: o for p, o in rows}

    def load_halts(self) -> dict[int, str]:
        """The partitions halted by any process of the group, with the reason."""
        halts = partition_halts.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(halts.kafka_partition, halts.reason).where(halts.topic == self.topic)
            )
            return {p: reason for p, reason in rows}

    def record_halt(self, partition: int, reason: str) -> None:
        """Remember a halt durably (the first reason stays): whichever process takes the
        partition next keeps it paused until an operator resets its offsets."""

        def record() -> None:
            with self.engine.begin() as conn:
                stmt = dialect_insert(conn, partition_halts).values(
                    topic=self.topic,
                    kafka_partition=partition,
                    reason=reason,
                    halted_at_ms=int(time.time() * 1000),
                )
                conn.execute(stmt.on_conflict_do_nothing())

        retry_transient(record)

    def reset_offsets(self, targets: dict[int, int]) -> dict[int, int | None]:
        """Set each partition's next offset (inserting a missing row) and lift its halt, in
        one transaction; return the previous offsets (None where there was none).

        The counters stay; the fencing of running processes is no protection here (their
        expected offsets would simply stop matching), which is why the command refuses to run
        while the consumer group has members.
        """
        return retry_transient(lambda: self._reset_once(targets))

    def _reset_once(self, targets: dict[int, int]) -> dict[int, int | None]:
        state, halts = partition_state.c, partition_halts.c
        now_ms = int(time.time() * 1000)
        with self.engine.begin() as conn:
            old = dict(
                conn.execute(
                    select(state.kafka_partition, state.next_offset).where(
                        state.topic == self.topic, state.kafka_partition.in_(sorted(targets))
                    )
                ).all()
            )
            for partition, offset in sorted(targets.items()):
                if partition in old:
                    conn.execute(
                        update(partition_state)
                        .where(state.topic == self.topic, state.kafka_partition == partition)
                        .values(next_offset=offset, updated_at_ms=now_ms)
                    )
                else:
                    conn.execute(
                        dialect_insert(conn, partition_state).values(
                            topic=self.topic,
                            kafka_partition=partition,
                            next_offset=offset,
                            events=0,
                            duplicates=0,
                            rejected=0,
                            max_kafka_ts=0,
                            updated_at_ms=now_ms,
                        )
                    )
            conn.execute(
                delete(partition_halts).where(
                    halts.topic == self.topic, halts.kafka_partition.in_(sorted(targets))
                )
            )
        return {p: old.get(p) for p in sorted(targets)}
