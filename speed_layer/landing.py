"""The landing zone writer: raw valid events, durable and idempotent, by ingest bucket.

Fed by the consumer loop. Records are buffered per partition and written when the buffer is
old (``landing_flush_ms``) or large (``landing_flush_records``): one Parquet file per
(partition, bucket) per flush, named by its offset range, written atomically (temp, fsync,
rename). After each flush the partition's progress is recorded: the next unlanded offset and
the time below which every record of the partition is landed. The writes run behind the loop,
in order, on a thread of their own (:mod:`speed_layer.write_behind`); the loop's view of a
partition (``landed_next``) counts what is queued. A failed write cancels the writes queued
after it and is raised to the loop, which reads the durable progress again (:meth:`recover`,
then :meth:`assign`) and lands the records from there: a progress record never vouches for a
file that is not there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import groupby

from lambda_contracts.buckets import ingest_bucket
from lambda_contracts.landing_files import warm_up, write_landing_table
from lambda_contracts.layout import Layout, PartitionProgress, landing_file_range
from speed_layer.event_block import EventBlock
from speed_layer.write_behind import WriteBehind


@dataclass
class _PartitionBuffer:
    landed_next: int
    sealed_through_ms: int
    consumed_next: int
    rows: EventBlock = field(default_factory=EventBlock)
    oldest_at: float = 0.0  # monotonic time of the oldest buffered row
    durable_next: int = 0  # the next offset of the last progress written (the writes ended)


class LandingWriter:
    def __init__(
        self, layout: Layout, bucket_ms: int, flush_ms: int, flush_records: int, grace_ms: int
    ) -> None:
        self.layout = layout
        self.bucket_ms = bucket_ms
        self.flush_s = flush_ms / 1000
        self.flush_records = flush_records
        self.grace_ms = grace_ms
        self._parts: dict[int, _PartitionBuffer] = {}
        # One flush per partition of a usual assignment may queue without waiting: they fall
        # due together (the records arrive across the partitions at the same pace).
        self._writes = WriteBehind("landing", max_pending=4)
        warm_up()

    def assign(self, partition: int) -> int:
        """Start tracking a partition; returns the next offset that still needs landing.

        The queued writes end first, so the durable progress read is the last one."""
        self._writes.drain()
        progress = self.layout.read_progress(partition)
        landed = progress.next_offset if progress else 0
        sealed = progress.sealed_through_ms if progress else 0
        self._parts[partition] = _PartitionBuffer(landed, sealed, landed, durable_next=landed)
        return landed

    def revoke(self, partition: int) -> None:
        """Land what is buffered for a partition this process gives up (durably: its next
        owner reads the progress), then forget it."""
        if partition in self._parts:
            self.flush(partition)
            del self._parts[partition]

    def forget(self, partition: int) -> None:
        """Drop a partition's buffer unwritten: its records will be read (and landed) again
        from the durable progress, by this process or by the partition's new owner."""
        self._parts.pop(partition, None)

    def recover(self) -> BaseException | None:
        """Let the queued writes end and forget a failed one's error (returned if it was never
        raised). After a failure every partition's buffer is stale (its queued writes were
        cancelled): the caller forgets them and assigns the partitions again from the durable
        progress."""
        return self._writes.recover()

    def wait(self) -> None:
        """Wait for the queued writes; raise a failed write's error."""
        self._writes.wait()

    def close(self) -> None:
        """Wait for the queued writes (a failure stays unraised: the progress stays behind
        and the records are read again) and stop the writer thread."""
        self._writes.close()

    @property
    def partitions(self) -> list[int]:
        return list(self._parts)

    def landed_next(self, partition: int) -> int:
        """The next offset to land, counting the writes queued (not yet durable)."""
        return self._parts[partition].landed_next

    def durable_next(self, partition: int) -> int | None:
        """The next offset not durably landed: every record below it is in the landing zone
        and its progress written (None: the partition is not tracked)."""
        buf = self._parts.get(partition)
        return None if buf is None else buf.durable_next

    def open_from_ms(self, partition: int) -> int:
        """Start of the partition's first ingest bucket not sealed: a record stamped before it
        would land in a bucket a batch run may already have absorbed (a leader's clock that
        went back, a follower that lagged past the grace), so it is counted and landed in this
        one instead (see ``Batcher._ingest_stamps``)."""
        return ingest_bucket(self._parts[partition].sealed_through_ms, self.bucket_ms)

    def landed_stamps(self, partition: int, stamps: dict[int, int]) -> dict[int, int]:
        """The ingest times landed records were given, from their Kafka times
        (``stamps``: offset -> Kafka timestamp of records below the landed offset).

        A record stamped below the seal when it was landed went to the first open bucket then
        (``open_from_ms``); the store must count it in that same bucket when it is replayed
        for the store alone after a crash, or the two sinks would disagree. Only a record now
        below the seal can have been moved, and the bucket it went to is that of the landing
        file holding its offset: a listing of the buckets between, no file read."""
        open_from = self.open_from_ms(partition)
        moved = {o: ts for o, ts in stamps.items() if ts < open_from}
        if not moved:
            return stamps
        self._writes.wait()  # their files may still be queued (landed_next counts those)
        first_bucket = ingest_bucket(min(moved.values()), self.bucket_ms)
        found = self.layout.landing_keys_by_bucket(first_bucket, open_from + self.bucket_ms)
        landed = dict(stamps)
        for bucket, keys in found.items():
            for key in keys:
                owner, first, last = landing_file_range(key) or (-1, 0, -1)
                if owner != partition:
                    continue
                for offset, ts in moved.items():
                    if first <= offset <= last:
                        landed[offset] = max(ts, bucket)
        return landed

    def add_many(self, partition: int, events: EventBlock, consumed_next: int) -> None:
        """Record that every offset below ``consumed_next`` was consumed; ``events`` (valid
        events, none below the landed offset, in offset order) are buffered for landing.

        A call that consumes nothing past the landed offset is skipped, so a replay after a
        crash lands nothing twice.
        """
        buf = self._parts[partition]
        if consumed_next <= buf.landed_next:
            return
        if events:
            if not buf.rows:
                buf.oldest_at = time.monotonic()
            buf.rows.extend(events)
        buf.consumed_next = consumed_next

    def flush_due(self) -> None:
        """Queue the writes of the buffers that are old or large; raise a failed write's
        error (the loop then recovers)."""
        self._writes.raise_failure()
        now = time.monotonic()
        for partition, buf in self._parts.items():
            full = len(buf.rows) >= self.flush_records
            old = buf.rows and now - buf.oldest_at >= self.flush_s
            only_skipped = not buf.rows and buf.consumed_next > buf.landed_next
            if full or old or only_skipped:
                self._queue_flush(partition)

    def flush(self, partition: int) -> None:
        """Write every buffered row of the partition durably, then record the progress; wait
        for it (and for the writes queued before it)."""
        self._queue_flush(partition)
        self._writes.wait()

    def _queue_flush(self, partition: int) -> None:
        """Queue the writes of the partition's buffered rows, then of its progress."""
        buf = self._parts[partition]
        rows, max_ts = buf.rows, buf.sealed_through_ms
        if rows:
            max_ts = max(max_ts, max(rows.column("kafka_ts")))
        if buf.consumed_next == buf.landed_next and max_ts == buf.sealed_through_ms:
            return
        buf.rows = EventBlock()
        buf.landed_next = buf.consumed_next
        buf.sealed_through_ms = max_ts
        progress = self._progress(partition, buf)

        def write() -> None:
            if rows:
                table, stamps = rows.to_table(), rows.column("kafka_ts")
                for bucket, start, stop in self._runs_by_bucket(stamps):
                    run = table.slice(start, stop - start)
                    write_landing_table(self.layout, bucket, partition, run)
            self.layout.write_progress(progress)
            buf.durable_next = progress.next_offset

        self._writes.submit(write)

    def _runs_by_bucket(self, stamps: list[int]) -> list[tuple[int, int, int]]:
        """(bucket, start, stop) of each run of rows in one ingest bucket, in order: a file
        each. A flush's rows nearly always share one bucket (it spans seconds, a bucket
        minutes): seen from the lowest and highest timestamps, without a bucket per row."""
        low, high = (
            ingest_bucket(min(stamps), self.bucket_ms),
            ingest_bucket(max(stamps), self.bucket_ms),
        )
        if low == high:
            return [(low, 0, len(stamps))]
        runs, start = [], 0
        buckets = (ingest_bucket(ts, self.bucket_ms) for ts in stamps)
        for bucket, run in groupby(buckets):
            stop = start + sum(1 for _ in run)
            runs.append((bucket, start, stop))
            start = stop
        return runs

    def seal_caught_up(
        self, end_offsets: dict[int, int], positions: dict[int, int], broker_now_ms: int | None
    ) -> None:
        """Seal time for partitions with nothing unlanded below their end offset.

        ``broker_now_ms`` is a lower bound of the brokers' clock taken before ``end_offsets``
        were asked (see :mod:`speed_layer.broker_clock`): a record appended after the answer
        is stamped at or after it, and every record below the end offset is landed, so every
        record stamped before it (less the grace for broker skew and replication) is landed.

        Caught up is judged by the consumer's ``positions``, not by the last record consumed:
        a transaction's commit marker takes an offset but is never returned as a record.
        """
        if broker_now_ms is None:
            return
        sealed = broker_now_ms - self.grace_ms
        for partition, end in end_offsets.items():
            buf = self._parts.get(partition)
            if buf is None or not self._landed_through(buf, end, positions.get(partition)):
                continue
            if sealed > buf.sealed_through_ms:
                buf.sealed_through_ms = sealed
                self._queue_progress(partition, buf)

    @staticmethod
    def _landed_through(buf: _PartitionBuffer, end: int, position: int | None) -> bool:
        """Whether every record below ``end`` is landed: nothing buffered or consumed but
        unrecorded, and the landed offset (or the consumer, past records it skips) at ``end``."""
        if buf.rows or buf.consumed_next > buf.landed_next:
            return False
        return buf.landed_next >= end or (position is not None and position >= end)

    def _queue_progress(self, partition: int, buf: _PartitionBuffer) -> None:
        progress = self._progress(partition, buf)

        def write() -> None:
            self.layout.write_progress(progress)
            buf.durable_next = progress.next_offset

        self._writes.submit(write)

    @staticmethod
    def _progress(partition: int, buf: _PartitionBuffer) -> PartitionProgress:
        """The partition's progress as the buffer stands now (a snapshot for a queued write)."""
        return PartitionProgress(partition, buf.landed_next, buf.sealed_through_ms)
