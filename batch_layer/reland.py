"""Re-land a range of ingest buckets from Kafka into the landing zone.

For reprocessing: if landing files of some buckets were lost or damaged, the records are read
again from Kafka (while the topic still retains them), validated with the same contract and
written with the same file format and names. Overlap with existing files is harmless: every
reader deduplicates by (partition, offset). A rebuild afterwards recomputes the views.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import groupby
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from lambda_contracts.buckets import ingest_bucket
from lambda_contracts.events import Transaction, parse_event
from lambda_contracts.landing_files import landing_row, write_landing_file
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings


def _offset_range(
    consumer: KafkaConsumer, tps: list[TopicPartition], from_ms: int, to_ms: int
) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition, [first offset stamped >= from_ms, first offset stamped >= to_ms)."""
    starts = consumer.offsets_for_times({tp: from_ms for tp in tps})
    stops = consumer.offsets_for_times({tp: to_ms for tp in tps})
    ends = consumer.end_offsets(tps)
    ranges = {}
    for tp in tps:
        if starts[tp] is None:
            continue
        stop = stops[tp].offset if stops[tp] is not None else ends[tp]
        if starts[tp].offset < stop:
            ranges[tp] = (starts[tp].offset, stop)
    return ranges


def reland(settings: Settings, from_ms: int, to_ms: int) -> dict[str, Any]:
    """Re-land every valid record with ingest bucket in [from_ms, to_ms); return a summary."""
    layout = Layout.of(settings)
    consumer = KafkaConsumer(
        **settings.kafka_client_config,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",  # the speed layer lands committed records only
    )
    try:
        tps = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        ranges = _offset_range(consumer, tps, from_ms, to_ms)
        rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for tp, (start, _) in ranges.items():
            consumer.seek(tp, start)
        pending = set(ranges)
        consumer.pause(*[tp for tp in tps if tp not in ranges])
        while pending:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                stop = ranges[tp][1]
                for rec in records:
                    if rec.offset >= stop:
                        break
                    parsed = parse_event(rec.value)
                    if isinstance(parsed, Transaction):
                        row = landing_row(parsed, tp.partition, rec.offset, rec.timestamp)
                        rows[tp.partition].append(row)
                if consumer.position(tp) >= stop:
                    pending.discard(tp)
                    consumer.pause(tp)
    finally:
        consumer.close()
    files = []
    for partition, part_rows in rows.items():
        for bucket, group in groupby(
            part_rows, key=lambda r: ingest_bucket(r["kafka_ts"], settings.bucket_ms)
        ):
            files.append(str(write_landing_file(layout, bucket, partition, list(group))))
    return {
        "from_ms": from_ms,
        "to_ms": to_ms,
        "records": sum(len(r) for r in rows.values()),
        "files": files,
        "offsets": {tp.partition: list(r) for tp, r in ranges.items()},
    }
