"""Shared bench plumbing: a private broker, timing, and the report file."""

from __future__ import annotations

import json
import os
import platform
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from infra.local_broker import Broker, start_broker
from infra.topics import ensure_topics
from lambda_contracts.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
# LAMBDA_BENCH_KAFKA_PORT moves the private broker (and its controller, one above) so two
# benchmarks can share a machine.
BENCH_KAFKA_PORT = int(os.environ.get("LAMBDA_BENCH_KAFKA_PORT", "39092"))


@contextmanager
def bench_broker() -> Iterator[Broker]:
    """A private broker (``BENCH_KAFKA_PORT`` and the one above) on a temporary data directory."""
    with tempfile.TemporaryDirectory(prefix="lambda-bench-kafka-") as tmp:
        broker = start_broker(Path(tmp), BENCH_KAFKA_PORT, BENCH_KAFKA_PORT + 1)
        try:
            yield broker
        finally:
            broker.stop()


def bench_settings(broker: Broker, data_dir: Path, name: str, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "kafka_bootstrap": broker.settings.kafka_bootstrap,
        "topic": name,
        "dlq_topic": f"{name}.dlq",
        "speed_group": f"{name}-speed",
    }
    settings = Settings(**(fields | overrides))
    ensure_topics(settings)
    return settings


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def write_report(name: str, figures: dict[str, Any]) -> Path:
    """Print the figures and keep them as JSON under bench/results/."""
    RESULTS.mkdir(exist_ok=True)
    figures = {
        "bench": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        **figures,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    return path


def consume_all(settings: Settings, total: int) -> float:
    """Seconds a bare kafka-python consumer takes to iterate ``total`` records of the topic."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topic,
        **settings.kafka_client_config,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
    )
    return poll_until(consumer, total)


def poll_until(consumer: Any, total: int) -> float:
    """Seconds ``consumer`` takes to be handed ``total`` records; it is closed after."""
    seen = 0
    with Timer() as timer:
        while seen < total:
            for batch in consumer.poll(timeout_ms=1000).values():
                seen += len(batch)
    consumer.close()
    return timer.seconds


def _consume_share(
    settings: Settings, partitions: list[int], ready: Any, go: Any, results: Any
) -> None:
    """One bare consumer reading ``partitions`` to their ends; puts its seconds from ``go``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **settings.kafka_client_config,
        enable_auto_commit=False,
        max_poll_records=5000,
    )
    tps = [TopicPartition(settings.topic, p) for p in partitions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    total = sum(consumer.end_offsets(tps).values()) - sum(consumer.beginning_offsets(tps).values())
    ready.set()
    go.wait()
    results.put(poll_until(consumer, total))


def consume_partitions_in_parallel(settings: Settings, processes: int) -> float:
    """Seconds ``processes`` bare consumers (one per process, partitions dealt round-robin)
    take to read the whole topic, started together once all are connected."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    shares = [list(range(settings.partitions))[i::processes] for i in range(processes)]
    go, results = ctx.Event(), ctx.Queue()
    readies = [ctx.Event() for _ in shares]
    workers = [
        ctx.Process(target=_consume_share, args=(settings, share, ready, go, results))
        for share, ready in zip(shares, readies, strict=True)
    ]
    for worker in workers:
        worker.start()
    for ready in readies:
        ready.wait(120)
    go.set()
    seconds = max(results.get(timeout=600) for _ in workers)
    for worker in workers:
        worker.join(60)
    return seconds


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so a fault run that is told to stop (a test's time-out)
    still runs its ``finally`` and takes the platform it started down with it."""

    def stop(*_: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop)


def same_parquet_rows(a: tuple[list[str], str], b: tuple[list[str], str]) -> bool:
    """Whether two sets of Parquet files hold the same rows (as multisets), each side given as
    (files, the columns to compare, in order). Outside any timed section."""
    con = duckdb.connect()
    try:
        (a_files, a_cols), (b_files, b_cols) = a, b
        left, right = (
            f"(SELECT {a_cols} FROM read_parquet(?))",
            f"(SELECT {b_cols} FROM read_parquet(?))",
        )
        diff = con.execute(
            f"SELECT count(*) FROM ({left} EXCEPT ALL {right}) "
            f"UNION ALL SELECT count(*) FROM ({right} EXCEPT ALL {left})",
            [a_files, b_files, b_files, a_files],
        ).fetchall()
    finally:
        con.close()
    return not any(n for (n,) in diff)
