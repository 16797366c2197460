"""Produce and consume throughput of ~150-byte JSON events with kafka-python on this broker.

.venv/bin/python -m bench.kafka_throughput [--events 200000]
"""

from __future__ import annotations

import argparse
import tempfile
from decimal import Decimal
from pathlib import Path

from bench.common import Timer, bench_broker, bench_settings, consume_all, write_report
from lambda_contracts.events import Transaction
from producer.cli import make_producer


def payloads(n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        event = Transaction(
            TransactionID=f"bench-{i:09d}",
            CreatedTime=1795676000000 + i,
            SourceAccountID=f"{100000 + i % 10000}",
            TargetAccountID=f"{200000 + i % 7919}",
            Amount=Decimal("1234.56"),
        )
        out.append((event.key, event.to_json_bytes()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    records = payloads(args.events)
    size = sum(len(v) for _, v in records) / len(records)
    with bench_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(broker, Path(tmp), "bench-kafka")
        producer = make_producer(settings.kafka_client_config, linger_ms=20, batch_size=262_144)
        with Timer() as produce:
            for key, value in records:
                producer.send(settings.topic, key=key, value=value)
            producer.flush()
        producer.close()
        consume_seconds = consume_all(settings, len(records))
    write_report(
        "kafka_throughput",
        {
            "command": f"python -m bench.kafka_throughput --events {args.events}",
            "events": args.events,
            "avg_value_bytes": round(size, 1),
            "produce_events_per_s": round(args.events / produce.seconds),
            "consume_events_per_s": round(args.events / consume_seconds),
            "producer": "kafka-python, acks=all, idempotent, linger 20 ms",
        },
    )


if __name__ == "__main__":
    main()
