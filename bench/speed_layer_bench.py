"""Speed-layer throughput vs raw kafka-python consumption, and freshness at a fixed rate.

    .venv/bin/python -m bench.speed_layer_bench [--events 200000] [--rate 2000 5000]
        [--seconds 30] [--processes 1 2]

Throughput: the same pre-produced messages are read (1) by bare kafka-python consumers that
only iterate them — the ceiling for this client — and (2) by speed-layer processes (validate,
dedup, aggregate, land, commit) in one consumer group, side by side in one run, for each
``--processes`` count N: N bare consumers (the partitions dealt between them) against N speed
processes, timed from when the group is stable with all N (their joins' rebalances excluded;
the bare consumers' clock includes their connection and first fetch, so the ratio leans, by
that much, in the speed layer's favour; use enough ``--events`` to make it small).
Freshness: events produced at a fixed rate (each ``--rate`` in turn, on a fresh topic); a monitor
polls the store's offsets every 5 ms; an event's latency is the first time its offset is counted
minus its broker timestamp.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from bench.common import (
    bench_broker,
    bench_settings,
    consume_all,
    consume_partitions_in_parallel,
    percentile,
    write_report,
)
from bench.kafka_throughput import payloads
from lambda_contracts.db import make_engine
from producer.cli import make_producer
from tests.support.pipeline import SpeedProcess, stored_offsets, wait_until


def produce_payloads(settings, events: int) -> None:  # type: ignore[no-untyped-def]
    """Put ``events`` benchmark messages on the settings' topic, in large producer batches."""
    producer = make_producer(settings.kafka_client_config, linger_ms=20, batch_size=262_144)
    for key, value in payloads(events):
        producer.send(settings.topic, key=key, value=value)
    producer.flush()
    producer.close()


def raw_consume(settings, total: int, processes: int) -> float:  # type: ignore[no-untyped-def]
    """Events/s of ``processes`` bare consumers, each reading its share of the partitions."""
    if processes == 1:
        return total / consume_all(settings, total)
    return total / consume_partitions_in_parallel(settings, processes)


def group_members(settings, group: str) -> int:  # type: ignore[no-untyped-def]
    """Members of a consumer group that is Stable with every member assigned (else 0)."""
    admin = KafkaAdminClient(**settings.kafka_admin_config)
    try:
        (info,) = admin.describe_consumer_groups([group])
    except KafkaError:  # the group's coordinator not elected yet
        return 0
    finally:
        admin.close()
    if info.state != "Stable" or not info.members:
        return 0
    return len(info.members) if all(m.member_assignment for m in info.members) else 0


def speed_consume(settings, total: int, processes: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Events/s of ``processes`` speed processes in one group, from the moment the group is
    stable with all of them (the rebalances of their joins are not counted): over the whole
    run and over each half of the messages (the store's cost grows with its size)."""
    engine = make_engine(settings.speed_store_url)
    speeds = [SpeedProcess(settings, instance=i).start() for i in range(processes)]
    try:
        wait_until(
            lambda: group_members(settings, settings.speed_group) == processes, 120, "the group"
        )
        first = sum(stored_offsets(engine, settings.topic).values())
        if first > total // 2:
            raise SystemExit(
                f"{processes} speed processes counted {first} of the {total} events before "
                "their group was stable: too few events to time them; raise --events"
            )
        start, half = time.monotonic(), None
        while (counted := sum(stored_offsets(engine, settings.topic).values())) < total:
            elapsed = time.monotonic() - start
            if elapsed > 600:
                raise TimeoutError("the speed layer did not consume everything in 600 s")
            if half is None and counted >= total // 2:
                half = (elapsed, counted)
            time.sleep(0.05)
        elapsed = time.monotonic() - start
    finally:
        for speed in speeds:
            speed.terminate()
    half = half or (elapsed, total)  # everything counted at the first look past half
    return {
        "events_per_s": (total - first) / elapsed,
        "first_half": (half[1] - first) / half[0],
        "second_half": (total - half[1]) / max(elapsed - half[0], 1e-9),
    }


def freshness(settings, rate: float, seconds: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    engine = make_engine(settings.speed_store_url)
    speed = SpeedProcess(settings).start()
    wait_until(lambda: True, 1, "")
    time.sleep(5)  # joined the group
    records = payloads(int(rate * seconds))
    producer = make_producer(settings.kafka_client_config, linger_ms=0)
    sent: list = []
    counted: dict[tuple[int, int], float] = {}  # (partition, next_offset) -> first seen (ms)
    done = threading.Event()

    def monitor() -> None:
        while not done.is_set():
            now = time.time() * 1000
            for p, off in stored_offsets(engine, settings.topic).items():
                counted.setdefault((p, off), now)
            time.sleep(0.005)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    start = time.monotonic()
    for i, (key, value) in enumerate(records):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent.append(producer.send(settings.topic, key=key, value=value))
    producer.flush()
    sending_s = time.monotonic() - start  # the producer may fall behind the asked rate
    metas = [f.get(30) for f in sent]
    time.sleep(3)
    done.set()
    watcher.join()
    speed.terminate()
    per_partition: dict[int, list[tuple[int, float]]] = {}
    for (p, off), at in counted.items():
        per_partition.setdefault(p, []).append((off, at))
    latencies = []
    for meta in metas:
        marks = sorted(per_partition.get(meta.partition, []))
        seen_at = next((at for off, at in marks if off > meta.offset), None)
        if seen_at is not None:
            latencies.append(seen_at - meta.timestamp)
    return {
        "events": len(metas),
        "produced_per_s": round(len(metas) / sending_s),
        "measured": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=float, nargs="+", default=[2000.0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1],
        help="speed-layer processes in the group (each count against as many bare consumers)",
    )
    args = parser.parse_args()
    throughput = {}
    with bench_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(broker, Path(tmp) / "a", "bench-speed")
        produce_payloads(settings, args.events)
        for n in args.processes:
            raw = raw_consume(settings, args.events, n)
            group = bench_settings(
                broker, Path(tmp) / f"s{n}", "bench-speed", speed_group=f"bench-speed-{n}"
            )
            speed = speed_consume(group, args.events, n)["events_per_s"]
            throughput[str(n)] = {
                "raw_kafka_python_events_per_s": round(raw),
                "speed_layer_events_per_s": round(speed),
                "speed_vs_raw": round(speed / raw, 3),
            }
        fresh = {}
        for i, rate in enumerate(args.rate):
            fresh_settings = bench_settings(broker, Path(tmp) / f"b{i}", f"bench-fresh-{i}")
            fresh[f"{rate:g}"] = freshness(fresh_settings, rate, args.seconds)
    write_report(
        "speed_layer",
        {
            "command": "python -m bench.speed_layer_bench "
            f"--events {args.events} --rate {' '.join(f'{r:g}' for r in args.rate)} "
            f"--seconds {args.seconds:g} --processes {' '.join(map(str, args.processes))}",
            "throughput_by_processes": throughput,
            "freshness_by_rate": fresh,
            "store": "SQLite (WAL, synchronous=NORMAL)",
        },
    )


if __name__ == "__main__":
    main()
