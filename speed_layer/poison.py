"""Poison records: a store error that one record's data causes must not stop its partition.

When a poll batch's store transaction fails with an error that re-running cannot cure and that
is not fencing — a CHECK constraint, a trigger, a value the column cannot hold — the commit
pipeline (:mod:`speed_layer.commit_pipeline`) reads the batch again, and if the store refuses
it again, applies it record by record (:func:`split_by_record`): each piece is its own
transaction that also advances the partition's stored offset, so exactly-once holds piece by
piece, and a piece that fails again goes to the DLQ and is counted as rejected instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import structlog
from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy.exc import DBAPIError

from speed_layer.dlq import DeadLetters
from speed_layer.event_block import EventBlock
from speed_layer.store import AppliedBatch, PartitionBatch, SpeedStore
from speed_layer.store_retry import FencedError, is_transient

log = structlog.get_logger("speed_layer.poison")

# SQLSTATE classes a single row's values can cause: data exception (22), integrity constraint
# violation (23), and RAISE EXCEPTION from a PL/pgSQL trigger (P0001).
RECORD_SQLSTATE_CLASSES = ("22", "23")
RECORD_SQLSTATES = frozenset({"P0001"})
MAX_REASON_CHARS = 500


def is_record_error(exc: BaseException) -> bool:
    """Whether ``exc`` may be caused by one record's data (and so is worth isolating).

    Transient errors are retried by the store and fencing re-syncs the consumer; an outage or
    a schema missing would fail every record alike, and dead-lettering the whole stream for it
    would be worse than stopping, so those stay fatal.
    """
    if isinstance(exc, FencedError) or is_transient(exc) or not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        return sqlstate[:2] in RECORD_SQLSTATE_CLASSES or sqlstate in RECORD_SQLSTATES
    return isinstance(orig, sqlite3.IntegrityError | sqlite3.DataError)


def store_reason(exc: BaseException) -> str:
    """The DLQ reason for a record the store refused: the driver's message, without the SQL."""
    orig = getattr(exc, "orig", None) or exc
    first_line = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return f"store: {first_line}"[:MAX_REASON_CHARS]


@dataclass(frozen=True)
class Piece:
    """One transaction of the fallback: ``batch`` ends with the record at ``offset``.

    ``row_offset`` is that record's offset when it is a valid row (the piece that may fail);
    None for a trailing piece that only moves past records the DLQ already has.
    """

    batch: PartitionBatch
    row_offset: int | None


def split_by_record(batch: PartitionBatch, timestamps: dict[int, int]) -> list[Piece]:
    """Cut a partition's batch into one piece per valid row, in offset order.

    Records rejected by validation (already dead-lettered) ride along with the next row's
    piece; those after the last row form a final piece. Each piece starts where the previous
    one ends, so the pieces chain from ``batch.expected_offset`` to ``batch.next_offset``.
    ``timestamps`` maps each counted offset to its Kafka timestamp.
    """
    rows = {offset: i for i, offset in enumerate(batch.rows.column("kafka_offset"))}
    pieces: list[Piece] = []
    expected, rejected, max_ts = batch.expected_offset, 0, 0
    for offset in sorted(timestamps):
        max_ts = max(max_ts, timestamps[offset])
        if offset not in rows:
            rejected += 1
            continue
        row = batch.rows.slice(rows[offset], rows[offset] + 1)
        piece = PartitionBatch(batch.partition, expected, offset + 1, row, rejected)
        piece.max_kafka_ts = max_ts
        pieces.append(Piece(piece, offset))
        expected, rejected = offset + 1, 0
    if expected != batch.next_offset or not pieces:
        tail = PartitionBatch(batch.partition, expected, batch.next_offset, EventBlock(), rejected)
        tail.max_kafka_ts = max(max_ts, batch.max_kafka_ts)
        pieces.append(Piece(tail, None))
    return pieces


def rejected_instead(piece: Piece) -> PartitionBatch:
    """The piece without its row: the offsets still advance, the record counts as rejected."""
    b = piece.batch
    replacement = PartitionBatch(
        b.partition, b.expected_offset, b.next_offset, EventBlock(), b.rejected + 1
    )
    replacement.max_kafka_ts = b.max_kafka_ts
    return replacement


def apply_record_by_record(
    store: SpeedStore,
    dlq: DeadLetters,
    batches: list[PartitionBatch],
    polled: Mapping[int, list[ConsumerRecord]],
    stored: MutableMapping[int, int | None],
) -> AppliedBatch:
    """Isolate the records the store refuses: one transaction per valid record, each
    moving the partition's stored offset (``stored``, the loop's cursor) past it, and a
    refused record dead-lettered (and acknowledged) before the transaction that moves past it
    as rejected. ``polled``: the poll batch's records by partition, for their key and value.

    Landing is untouched: the refused record is a valid event of the master dataset, so the
    next batch run counts it (the publish's drift report shows the difference until then).
    """
    events = duplicates = rejected = 0
    for batch in batches:
        counted = {
            rec.offset: rec
            for rec in polled[batch.partition]
            if (batch.expected_offset is None or rec.offset >= batch.expected_offset)
            and rec.offset < batch.next_offset
        }
        timestamps = {offset: rec.timestamp for offset, rec in counted.items()}
        for piece in split_by_record(batch, timestamps):
            applied = _apply_piece(store, dlq, piece, counted)
            stored[batch.partition] = piece.batch.next_offset
            events += applied.events
            duplicates += applied.duplicates
            rejected += applied.rejected
    return AppliedBatch(events, duplicates, rejected)


def _apply_piece(
    store: SpeedStore, dlq: DeadLetters, piece: Piece, counted: dict[int, ConsumerRecord]
) -> AppliedBatch:
    """One piece of the fallback; if the store refuses its record, the DLQ gets it."""
    try:
        return store.apply([piece.batch])
    except Exception as exc:
        if piece.row_offset is None or not is_record_error(exc):
            raise
        rec = counted[piece.row_offset]
        reason = store_reason(exc)
        log.error(
            "record refused by the store; dead-lettered",
            partition=rec.partition,
            offset=rec.offset,
            reason=reason,
        )
        dlq.send(rec.key, rec.value, reason, (rec.topic, rec.partition, rec.offset, rec.timestamp))
        dlq.flush()
        return store.apply([rejected_instead(piece)])
