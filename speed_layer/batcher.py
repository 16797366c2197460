"""Cuts a partition's polled records into what the store lacks and what the landing zone lacks.

One validation rule for every record (the contract's, ``lambda_contracts.events``): a valid
event becomes a placed row (its partition, offset and ingest time), anything else a dead
letter with its reason. A replay after a crash is counted only where the store lacks it and
landed only where the landing zone does, so neither sink gets a record twice. The common case,
every record new and plainly valid, is one branch validated as columns.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import structlog
from kafka.consumer.fetcher import ConsumerRecord

from lambda_contracts.events import Rejection, event_row, plain_event_columns
from lambda_contracts.landing_files import place_row
from speed_layer.dlq import DeadLetters
from speed_layer.event_block import EventBlock
from speed_layer.landing import LandingWriter
from speed_layer.metrics import SpeedMetrics
from speed_layer.store import PartitionBatch

log = structlog.get_logger("speed_layer.batcher")

_OFFSET, _TIMESTAMP, _VALUE = attrgetter("offset"), attrgetter("timestamp"), attrgetter("value")
LOG_APPEND_TIME = 1


class Batcher:
    """Turns each partition's polled records into a :class:`PartitionBatch` and landing rows."""

    def __init__(self, landing: LandingWriter, dlq: DeadLetters, metrics: SpeedMetrics) -> None:
        self.landing = landing
        self.dlq = dlq
        self.metrics = metrics
        self._warned_timestamp_type = False

    def cut(
        self, partition: int, records: list[ConsumerRecord], stored: int | None
    ) -> PartitionBatch | None:
        """Land what is not landed yet; count (or dead-letter) what the store lacks
        (``stored``: the store's next offset, None if it has none). None: nothing to count."""
        landed_next = self.landing.landed_next(partition)
        batch = PartitionBatch(partition, stored, stored if stored is not None else 0)
        self._check_timestamp_type(records[0])
        first = records[0].offset
        new = first >= landed_next and (stored is None or first >= stored)
        if new and self._plain_columns(batch, records):
            return batch
        counted_any = False
        rows, to_land, landed_through = batch.rows, EventBlock(), None
        # Records not landed yet get their ingest time now; a landed one replayed for the
        # store alone gets the one it was landed with (the seal may have moved past it since).
        unlanded = [rec for rec in records if rec.offset >= landed_next]
        replayed = {
            rec.offset: rec.timestamp
            for rec in records
            if rec.offset < landed_next and (stored is None or rec.offset >= stored)
        }
        stamps = {rec.offset: rec.timestamp for rec in records}
        stamps.update(self.landing.landed_stamps(partition, replayed) if replayed else {})
        ingest = self._ingest_stamps(partition, unlanded)
        stamps.update(zip(map(_OFFSET, unlanded), ingest, strict=True))
        for rec in records:
            offset = rec.offset
            counted = stored is None or offset >= stored
            landing = offset >= landed_next
            if not counted and not landing:
                continue  # a replay below both cursors: already in both sinks
            row = self._row(rec, partition, stamps[offset], dead_letter=counted)
            if row is None:
                if counted:
                    batch.rejected += 1
            else:
                if landing:
                    to_land.append(row)
                if counted:
                    rows.append(row)
            if landing:
                landed_through = offset
            if counted:
                counted_any = True
                batch.next_offset = offset + 1
                batch.max_kafka_ts = max(batch.max_kafka_ts, stamps[offset])
        if landed_through is not None:
            self.landing.add_many(partition, to_land, landed_through + 1)
        return batch if counted_any else None

    def _plain_columns(self, batch: PartitionBatch, records: list[ConsumerRecord]) -> bool:
        """Every record new and plainly valid (nearly always): validated at once, as columns,
        counted and landed. False (nothing done) if any record needs the rule one by one."""
        events = plain_event_columns(list(map(_VALUE, records)))
        if events is None:
            return False
        partition = batch.partition
        stamps = self._ingest_stamps(partition, records)
        batch.rows = EventBlock.placed(events, partition, list(map(_OFFSET, records)), stamps)
        batch.next_offset = records[-1].offset + 1
        batch.max_kafka_ts = max(stamps)
        self.landing.add_many(partition, batch.rows, batch.next_offset)
        return True

    def _row(
        self, rec: ConsumerRecord, partition: int, stamp: int, dead_letter: bool
    ) -> dict[str, Any] | None:
        """The record as a placed row, or None if it is no valid event (dead-lettered with
        the reason unless ``dead_letter`` is false: a replay the DLQ has already)."""
        parsed = event_row(rec.value)
        if isinstance(parsed, Rejection):
            if dead_letter:
                origin = (rec.topic, partition, rec.offset, rec.timestamp)
                self.dlq.send(rec.key, rec.value, parsed.reason, origin)
            return None
        return place_row(parsed, partition, rec.offset, stamp)

    def _ingest_stamps(self, partition: int, records: list[ConsumerRecord]) -> list[int]:
        """Each record's ingest time: its Kafka timestamp, or the start of the partition's
        first unsealed bucket if it is stamped before (issue 32, item 3). A sealed bucket may
        be in a published batch already; a record landed there would be in no answer until a
        rebuild. Counted and landed in an open bucket (both sinks get the same stamp), it is
        in the speed view now and in the next batch run, once."""
        stamps = list(map(_TIMESTAMP, records))
        open_from = self.landing.open_from_ms(partition)
        if not stamps or min(stamps) >= open_from:
            return stamps
        late = sum(1 for stamp in stamps if stamp < open_from)
        self.metrics.late.inc(late)
        log.warning(
            "records stamped in a sealed ingest bucket; counted in the first open one",
            partition=partition,
            records=late,
            oldest_ms=min(stamps),
            open_from_ms=open_from,
        )
        return [max(stamp, open_from) for stamp in stamps]

    def _check_timestamp_type(self, record: ConsumerRecord) -> None:
        if record.timestamp_type != LOG_APPEND_TIME and not self._warned_timestamp_type:
            self._warned_timestamp_type = True
            log.warning("topic is not LogAppendTime: ingest buckets follow producer clocks")
