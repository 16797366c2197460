"""Speed-layer settings side by side: the same messages, one broker, runs interleaved.

    .venv/bin/python -m bench.speed_ab --events 2000000 \\
        --config base: --config batch40k:speed_max_poll_records=40000 --rounds 2

``bench.speed_layer_bench`` gives one ratio per run, and the raw client moves by ±5 % from
run to run on a shared machine: a setting's effect of a few percent hides in that. Here the
messages are produced once; each round runs one speed process per ``--config`` (a name, then
``field=value`` pairs of ``Settings``; each run its own store, landing zone and consumer group)
in turn, and a bare kafka-python consumer reads them between rounds. Each run's events/s is
reported whole and per half of the messages (the store's cost grows with its size: the
second half shows it), and each config's mean against the mean of the bare consumer's runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import mean

from bench.common import bench_broker, bench_settings, consume_all, write_report
from bench.speed_layer_bench import produce_payloads, speed_consume


def parse_config(text: str) -> tuple[str, dict[str, str]]:
    """``name:field=value,field=value`` (``name:`` for the defaults). A name may end in
    ``@DIR``: that config's speed processes import the platform's packages from the source
    tree ``DIR`` (e.g. ``git worktree add /tmp/base HEAD``), to compare code side by side."""
    name, _, pairs = text.partition(":")
    fields = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    return name, fields


@contextmanager
def source_tree(name: str) -> Iterator[None]:
    """Speed processes started inside run the code of the config's tree (``name@DIR``)."""
    _, _, tree = name.partition("@")
    if not tree:
        yield
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(Path(tree).resolve())  # ahead of the editable install
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--config", action="append", required=True, type=parse_config)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in args.config}
    raw: list[float] = []
    with bench_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(broker, Path(tmp) / "topic", "bench-ab")
        produce_payloads(settings, args.events)
        raw.append(args.events / consume_all(settings, args.events))
        for round_ in range(args.rounds):
            for name, fields in args.config:
                label = name.partition("@")[0]
                run_settings = bench_settings(
                    broker,
                    Path(tmp) / f"{label}-{round_}",
                    "bench-ab",
                    speed_group=f"bench-ab-{label}-{round_}",
                    **fields,
                )
                with source_tree(name):
                    run = speed_consume(run_settings, args.events, 1)
                runs[name].append(run)
                print(
                    f"round {round_ + 1} {name}: {run['events_per_s']:,.0f} ev/s "
                    f"(halves {run['first_half']:,.0f} / {run['second_half']:,.0f})",
                    flush=True,
                )
            raw.append(args.events / consume_all(settings, args.events))
    raw_mean = mean(raw)
    summary = {
        name: {
            "fields": fields,
            "events_per_s": [round(r["events_per_s"]) for r in runs[name]],
            "halves": [(round(r["first_half"]), round(r["second_half"])) for r in runs[name]],
            "mean_vs_raw": round(mean(r["events_per_s"] for r in runs[name]) / raw_mean, 3),
        }
        for name, fields in args.config
    }
    write_report(
        "speed_ab",
        {
            "command": "python -m bench.speed_ab "
            f"--events {args.events} --rounds {args.rounds} "
            + " ".join(
                f"--config {n}:{','.join(f'{k}={v}' for k, v in f.items())}" for n, f in args.config
            ),
            "raw_kafka_python_events_per_s": [round(r) for r in raw],
            "configs": summary,
        },
    )


if __name__ == "__main__":
    main()
