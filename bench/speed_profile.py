"""Where a speed-layer process spends its time per event: cProfile of the real poll loop.

    .venv/bin/python -m bench.speed_profile [--events 100000] [--top 30]

Pre-produces the benchmark's messages on a private broker, then runs ``SpeedLayer`` in this
process (the same consumer, store and landing code ``lambda-speed`` runs) under cProfile until
the store's offsets reach the end, and prints the functions by cumulative time. Used to pick
the levers of issue 12; the throughput figure itself comes from ``bench.speed_layer_bench``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import tempfile
import threading
from pathlib import Path

from bench.common import Timer, bench_broker, bench_settings
from bench.kafka_throughput import payloads
from lambda_contracts.db import make_engine
from producer.cli import make_producer
from speed_layer.consumer import SpeedLayer
from speed_layer.dlq import DeadLetters
from speed_layer.main import GC_GEN0_THRESHOLD, make_consumer, make_dlq_producer
from speed_layer.metrics import SpeedMetrics
from tests.support.pipeline import stored_offsets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument(
        "--no-cprofile", action="store_true", help="run unprofiled (e.g. under py-spy)"
    )
    args = parser.parse_args()
    with bench_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(broker, Path(tmp), "bench-profile")
        producer = make_producer(settings.kafka_client_config, linger_ms=20, batch_size=262_144)
        for key, value in payloads(args.events):
            producer.send(settings.topic, key=key, value=value)
        producer.flush()
        producer.close()
        assert settings.speed_store_url is not None
        engine = make_engine(settings.speed_store_url)
        dlq = make_dlq_producer(settings, 0)
        layer = SpeedLayer(
            settings,
            make_consumer(settings, 0),
            DeadLetters(dlq, settings.dlq_topic),
            SpeedMetrics(),
        )
        stop = threading.Event()
        gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])  # as lambda-speed runs

        def watch() -> None:
            while not stop.wait(0.05):
                if sum(stored_offsets(engine, settings.topic).values()) >= args.events:
                    stop.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        profile = cProfile.Profile()
        with Timer() as timer:
            if args.no_cprofile:
                layer.run(stop)
            else:
                profile.runcall(layer.run, stop)
        watcher.join()
        dlq.close(timeout=5)
    print(f"{args.events} events in {timer.seconds:.2f} s (joining the group included)")
    if not args.no_cprofile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
