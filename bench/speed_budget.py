"""Per-event cost of each stage of the speed layer's poll loop, in this process, no broker.

    .venv/bin/python -m bench.speed_budget [--events 300000] [--batch 20000] [--views-file F]

The stages ``lambda-speed`` runs for every record after kafka-python has delivered it, on the
messages of ``bench.speed_layer_bench``, each timed alone with the production code, a poll
batch at a time: validating the values (``plain_event_columns``, the batch path a stream of
valid events takes; ``event_row``, record by record, is reported beside it), placing them in
the log (``EventBlock.placed``), landing (``LandingWriter``: Arrow, Parquet, fsync, rename) and
the store transaction (``SpeedStore.apply`` on SQLite: the rows loaded, dedup decided and
claimed, views aggregated and merged, offsets, commit), with the time its statements spend
inside SQLite (without the GIL) reported apart.
The poll thread runs the first three; the store transaction runs on the committer thread,
beside the next poll batch, and only its Python share (the rest) competes for the GIL.
The raw client's cost per event comes from ``bench.speed_layer_bench`` (1e6 / its raw
events/s).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.common import Timer, write_report
from bench.kafka_throughput import payloads
from lambda_contracts.db import make_engine
from lambda_contracts.events import event_row, plain_event_columns
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.view_set import ViewSet
from speed_layer.event_block import EventBlock
from speed_layer.landing import LandingWriter
from speed_layer.store import PartitionBatch, SpeedStore

BASE_TS = 1_795_676_000_000


def per_event_us(events: int, action: Callable[[], Any]) -> float:
    """Microseconds per event of one timed run of ``action`` (the GC as ``lambda-speed``
    sets it: collections rare, so they are not what is measured)."""
    gc.collect()
    with Timer() as timer:
        action()
    return timer.seconds / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=20_000, help="records per poll batch")
    parser.add_argument(
        "--views-file", type=Path, default=None, help="declared views the store computes too"
    )
    args = parser.parse_args()
    views = ViewSet.load(args.views_file) if args.views_file else ViewSet()
    n, batch = args.events, args.batch
    values = [value for _, value in payloads(n)]
    gc.set_threshold(50_000, 10, 10)  # as speed_layer.main

    with tempfile.TemporaryDirectory(prefix="lambda-bench-budget-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        layout = Layout.of(settings)
        starts = range(0, n, batch)
        events: list[dict[str, list[Any]] | None] = []
        figures = {
            "validate": per_event_us(
                n, lambda: events.extend(plain_event_columns(values[i : i + batch]) for i in starts)
            ),
            "validate record by record": per_event_us(n, lambda: list(map(event_row, values))),
        }
        assert None not in events, "the batch path refused the benchmark's valid events"
        blocks: list[EventBlock] = []

        def place_all() -> None:
            for i, columns in zip(starts, events, strict=True):
                offsets = list(range(i, i + len(columns["transaction_id"])))  # type: ignore[index]
                stamps = [BASE_TS + o for o in offsets]
                blocks.append(EventBlock.placed(columns, 0, offsets, stamps))  # type: ignore[arg-type]

        figures["place"] = per_event_us(n, place_all)
        landing = LandingWriter(
            layout,
            settings.bucket_ms,
            settings.landing_flush_ms,
            settings.landing_flush_records,
            settings.idle_seal_grace_ms,
        )
        landing.assign(0)

        def land_all() -> None:  # a poll batch at a time, flushed when full, as in the loop
            for start, block in zip(starts, blocks, strict=True):
                landing.add_many(0, block, start + len(block))
                landing.flush_due()
            landing.flush(0)

        figures["land"] = per_event_us(n, land_all)
        engine = make_engine(f"sqlite:///{tmp}/speed.db")
        in_sqlite = [0.0]
        by_table: dict[str, float] = {}

        @event.listens_for(engine, "before_cursor_execute")
        def started(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
            conn.info["started"] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def ended(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
            took = time.perf_counter() - conn.info["started"]
            in_sqlite[0] += took
            if statement.startswith("INSERT INTO speed_"):  # the load, the claim, each view
                table = statement.split()[2]
                by_table[table] = by_table.get(table, 0.0) + took

        store = SpeedStore(engine, "budget", settings.bucket_ms, settings.dedup_horizon_ms, views)
        store.deploy()

        def apply_all() -> None:
            expected = None
            for i, block in zip(starts, blocks, strict=True):
                last_ts = block.column("kafka_ts")[-1]
                part = PartitionBatch(0, expected, i + len(block), block, max_kafka_ts=last_ts)
                store.apply([part])
                expected = part.next_offset

        figures["store transaction"] = per_event_us(n, apply_all)
    statements = in_sqlite[0] / n * 1e6
    shown = {  # a declared view's tables by its name (their own names are digests)
        f"speed_{view.name}": f"{d.name} ({view.description.split(': ', 1)[1]})"
        for d in views.declared
        for view in d.computed
    }
    poll_thread = figures["validate"] + figures["place"] + figures["land"]
    write_report(
        "speed_budget",
        {
            "command": f"python -m bench.speed_budget --events {n} --batch {batch}"
            + (f" --views-file {args.views_file}" if args.views_file else ""),
            "declared_views": [f"{d.name}@{d.version}" for d in views.declared],
            "microseconds_per_event": {k: round(v, 2) for k, v in figures.items()},
            "of_the_store_transaction_its_statements_us_per_event": round(statements, 2),
            "poll_thread_own_work_us_per_event": round(poll_thread, 2),
            "committer_thread_us_per_event": round(figures["store transaction"], 2),
            "store_inserts_us_per_event_by_table": {
                shown.get(table, table): round(took / n * 1e6, 2)
                for table, took in sorted(by_table.items(), key=lambda kv: -kv[1])
            },
        },
    )


if __name__ == "__main__":
    main()
