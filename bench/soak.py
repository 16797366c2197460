"""A soak: the local platform for hours at a steady load, to show what grows and what stays flat.

    .venv/bin/python -m bench.soak [--minutes 120] [--rate 500] [--api-rate 100] [--sample-s 60]

Starts ``lambda-platform up`` on a fresh data directory with a batch run every minute (one
ingest bucket a minute), Airflow's upkeep keeping 20 minutes of Airflow's logs and records,
and small service logs (1 MiB, two copies: their bound is reached early). Produces the
adversarial stream (duplicates, conflicting copies, late and malformed records) at ``--rate``
events/s, and queries the API at a fixed ``--api-rate`` with vegeta (open loop) all along.
Every ``--sample-s`` it samples:

- the memory of every service (PSS: shared pages split, so the parts add up), each service
  with its child processes; the batch job's ``spark-submit`` and Airflow's task processes
  are counted apart, since they live for one run;
- the size and the file count of each part of the data directory (Kafka, landing, batch
  versions, the speed store, logs, Airflow, …);
- the batch version being served.

At the end the stream stops, the API must converge to the ground truth (the topic read back,
folded by the independent oracle), a last ``lambda_batch`` run must publish views equal to the
oracle's, and the answers must still equal the truth. The targets, over the last hour (the
second half of a shorter run): no service's memory grows by more than 10 %; every part of the
data directory but Kafka's retained log and the landing zone stays flat (within 10 % or
1 MiB); the answers are exact. Writes ``bench/results/soak.json`` and PNG plots beside it, and
exits non-zero unless every target holds.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import tempfile
import time
from collections import defaultdict
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.chaos import airflow, final_batch, platform_cmd
from bench.chaos_check import (
    ALL_TIME,
    GroundTruth,
    cents,
    check_dlq,
    check_landing,
    convergence_s,
    read_log,
    reckoning_checks,
    stream_figures,
)
from bench.common import RESULTS, exit_on_sigterm, percentile, write_report
from bench.memory import memory_of, parent_of, stack_processes
from bench.serving_bench import vegeta
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from tests.support.oracle import oracle_views
from tests.support.pipeline import BIN, batch_views, env_for, mixed_stream, read_truth

console = Console()
MIB = 1024 * 1024
ACCOUNTS = 2000
GROWTH_MAX = 0.10  # the targets: at most 10 % over the last hour …
FLAT_SLACK_BYTES = MIB  # … or, for a part of the data directory, at most 1 MiB
GROWING_PARTS = ("kafka", "landing")  # what is allowed to grow: the retained log, the zone
# The batch views cover the whole master dataset (a row per account and minute): they grow
# with the landing zone, not faster. What must not grow is the number of versions kept.
WITH_THE_DATASET = "batch"
EDGE_SAMPLES = 5  # a window's start and end are the medians of this many samples
# A batch run's processes (the task, spark-submit's JVM, the job's Python) are the children of
# an Airflow LocalExecutor worker; they live for one run and are counted apart.
BATCH_RUN = "batch run (tasks, spark-submit)"
EXECUTOR_WORKER = "LocalExecutor"


@dataclass(frozen=True)
class Sample:
    at_s: float
    memory: dict[str, int]  # PSS bytes per service (and per transient part)
    sizes: dict[str, int]  # bytes per part of the data directory
    files: dict[str, int]  # files per part of the data directory
    batch_version: str | None


def service_pids(layout: Layout) -> dict[int, str]:
    """{pid: service} of the services the platform's supervisor started (its pid files)."""
    found = {}
    for pid_file in layout.run_dir.glob("*.pid"):
        with suppress(ValueError, OSError):
            found[int(pid_file.read_text().strip())] = pid_file.stem
    return found


def owner(pid: int, services: dict[int, str], processes: dict[int, str]) -> str:
    """The service a process belongs to: itself or its nearest ancestor with a pid file; a
    batch run's short-lived processes apart; ``other`` for the rest (the load's producer)."""
    current: int | None = pid
    for _ in range(32):
        if current is None or current <= 1:
            break
        if current in services:
            return services[current]
        if current != pid and EXECUTOR_WORKER in processes.get(current, ""):
            return BATCH_RUN
        current = parent_of(current)
    return "other"


def memory_by_service(layout: Layout) -> dict[str, int]:
    services = service_pids(layout)
    processes = stack_processes(layout.data_dir)
    out: dict[str, int] = defaultdict(int)
    for pid in processes.keys() | services.keys():
        pss, _rss = memory_of(pid)
        out[owner(pid, services, processes)] += pss
    return dict(out)


def tree_size(root: Path) -> tuple[int, int]:
    """(bytes allocated, files) under ``root``; files that vanish meanwhile are skipped."""
    size = files = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            with suppress(OSError):
                size += os.lstat(os.path.join(folder, name)).st_blocks * 512
                files += 1
    return size, files


def data_parts(data_dir: Path) -> tuple[dict[str, int], dict[str, int]]:
    sizes, files = {}, {}
    for entry in sorted(data_dir.iterdir()):
        if entry.is_dir():
            sizes[entry.name], files[entry.name] = tree_size(entry)
    return sizes, files


def take_sample(layout: Layout, started: float) -> Sample:
    sizes, files = data_parts(layout.data_dir)
    current = None
    with suppress(Exception):  # a pointer being swapped: no version this sample
        pointer = layout.read_current()
        current = pointer.version if pointer else None
    return Sample(
        round(time.monotonic() - started, 1), memory_by_service(layout), sizes, files, current
    )


def growth(series: list[float]) -> tuple[float, float]:
    """(start, end) of a window: the medians of its first and last ``EDGE_SAMPLES`` values."""
    n = min(EDGE_SAMPLES, max(1, len(series) // 3))
    return median(series[:n]), median(series[-n:])


def window_targets(samples: list[Sample], window_s: float) -> dict[str, Any]:
    """Each service's memory and each data part's size at the start and the end of the last
    ``window_s`` seconds, and whether it is within its target."""
    end = samples[-1].at_s
    window = [s for s in samples if s.at_s >= end - window_s]
    memory, sizes = {}, {}
    transient = {BATCH_RUN, "other"}
    for name in sorted({k for s in window for k in s.memory} - transient):
        first, last = growth([s.memory.get(name, 0) for s in window])
        held = first == 0 or last <= first * (1 + GROWTH_MAX)
        memory[name] = {
            "start_mib": round(first / MIB, 1),
            "end_mib": round(last / MIB, 1),
            "growth": round(last / first - 1, 3) if first else None,
            "ok": held,
        }
    edges = {
        name: growth([s.sizes.get(name, 0) for s in window])
        for name in sorted({k for s in window for k in s.sizes})
    }
    landing_first, landing_last = edges.get("landing", (0, 0))
    for name, (first, last) in edges.items():
        bound = "flat"
        limit = first * (1 + GROWTH_MAX)
        if name in GROWING_PARTS:
            bound, limit = "grows", float("inf")
        elif name == WITH_THE_DATASET and landing_first:
            bound = "with the landing zone"
            limit = first * landing_last / landing_first * (1 + GROWTH_MAX)
        sizes[name] = {"start_mib": round(first / MIB, 2), "end_mib": round(last / MIB, 2),
                       "bound": bound,
                       "ok": last <= limit or last - first <= FLAT_SLACK_BYTES}  # fmt: skip
    return {"window_s": window_s, "samples": len(window), "memory": memory, "sizes": sizes}


def api_targets(accounts: int, seed: int, out: Path) -> Path:
    """vegeta's targets: an account's all-time summary (most requests) and the totals."""
    rng = random.Random(seed)
    base = "http://127.0.0.1:8000"
    span = f"start={ALL_TIME['start']}&end={ALL_TIME['end']}"
    with out.open("w") as f:
        for _ in range(20_000):
            if rng.random() < 0.2:
                f.write(f"GET {base}/v1/totals?{span}\n\n")
            else:
                account = 100000 + rng.randrange(accounts)
                f.write(f"GET {base}/v1/accounts/{account}/summary?{span}\n\n")
    return out


def minute_latencies(results: Path, t0: float) -> list[dict[str, float]]:
    """p50, p99 and errors of every minute of vegeta's results, from ``t0`` (unix seconds)."""
    import csv
    import io

    text = subprocess.run(
        [vegeta(), "encode", "-to=csv", str(results)], capture_output=True, check=True, text=True
    ).stdout
    by_minute: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for row in csv.reader(io.StringIO(text)):
        sent, code, latency = int(row[0]) / 1e9, int(row[1]), int(row[2]) / 1e6
        by_minute[int((sent - t0) // 60)].append((latency, code == 200 and not row[5]))
    table = []
    for minute in sorted(by_minute):
        lat = [latency for latency, _ in by_minute[minute]]
        table.append({"minute": minute, "requests": len(lat),
                      "p50_ms": round(percentile(lat, 50), 2),
                      "p99_ms": round(percentile(lat, 99), 2),
                      "errors": sum(not ok for _, ok in by_minute[minute])})  # fmt: skip
    return table


def answer_differences(api: str, truth: GroundTruth) -> list[str]:
    """Where the API's all-time totals and per-account summaries differ from the truth. The
    truth's per-account sums are folded here in one plain loop over the oracle's keys."""
    per_account: dict[str, list[int]] = {}
    for (account, _minute), (count, total, _lo, _hi) in truth.views["account_minute"].items():
        agg = per_account.setdefault(account, [0, 0])
        agg[0] += count
        agg[1] += total
    diffs = []
    with httpx.Client(base_url=api, timeout=60) as http:
        got = http.get("/v1/totals", params=ALL_TIME).json()
        want = truth.summary()
        if (got.get("count"), got.get("sum")) != (want["count"], want["sum"]):
            diffs.append(f"totals: api {got.get('count')}/{got.get('sum')} want {want}")
        for account, (count, total) in sorted(per_account.items()):
            got = http.get(f"/v1/accounts/{account}/summary", params=ALL_TIME).json()
            if (got.get("count"), got.get("sum")) != (count, cents(total)):
                diffs.append(f"account {account}: api {got.get('count')}/{got.get('sum')} "
                             f"want {count}/{cents(total)}")  # fmt: skip
    return diffs


def draw(samples: list[Sample], latencies: list[dict[str, float]], window_s: float) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.at_s / 60 for s in samples]
    start = (samples[-1].at_s - window_s) / 60
    pngs = []
    panels = [
        ("soak-memory.png", "memory (PSS) per service, MiB",
         lambda s: s.memory, 1 / MIB),
        ("soak-sizes.png", "size of each part of the data directory, MiB (log scale)",
         lambda s: s.sizes, 1 / MIB),
        ("soak-files.png", "files in each part of the data directory (log scale)",
         lambda s: s.files, 1),
    ]  # fmt: skip
    for name, title, pick, scale in panels:
        fig, ax = plt.subplots(figsize=(11, 5))
        keys = sorted({k for s in samples for k in pick(s)})
        for key in keys:
            ax.plot(minutes, [pick(s).get(key, 0) * scale for s in samples], label=key)
        if name != "soak-memory.png":
            ax.set_yscale("log")
        ax.axvline(start, linestyle="--", color="gray")
        ax.annotate("targets from here", (start, ax.get_ylim()[1]), fontsize=8, va="top")
        ax.set_xlabel("minutes")
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=7, ncol=3)
        fig.tight_layout()
        fig.savefig(RESULTS / name, dpi=90)
        plt.close(fig)
        pngs.append(name)
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot([w["minute"] for w in latencies], [w["p99_ms"] for w in latencies], label="p99")
    ax.plot([w["minute"] for w in latencies], [w["p50_ms"] for w in latencies], label="p50")
    ax.set_yscale("log")
    ax.set_xlabel("minutes")
    ax.set_ylabel("latency (ms)")
    ax.set_title("the API at a fixed rate, per minute")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "soak-latency.png", dpi=90)
    plt.close(fig)
    return [*pngs, "soak-latency.png"]


def soak_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        bucket_ms=60_000,
        batch_schedule_minutes=1,
        airflow_retention_days=20 / 1440,
        airflow_upkeep_interval_s=300,
        # Ids are remembered for the dedup horizon (a day by default): half an hour here, so
        # the speed store's and the batch's dedup indexes reach their bound within the run.
        dedup_horizon_ms=30 * 60_000,
        log_max_bytes=MIB,
        log_keep=2,
    )


def run(args: argparse.Namespace, data_dir: Path, scratch: Path) -> dict[str, Any]:
    settings = soak_settings(data_dir)
    env = env_for(settings, DEMO="0")
    layout = Layout.of(settings)
    api = f"http://{settings.api_host}:{settings.api_port}"
    seconds = int(args.minutes * 60)
    samples: list[Sample] = []
    try:
        console.print(f"starting the platform on {data_dir}")
        platform_cmd(env, "up", "--no-demo")
        client = airflow(settings)
        client.trigger("lambda_batch")  # unpauses the DAG; it then runs every minute
        truth_file = scratch / "acked.jsonl"
        producer = subprocess.Popen(
            [str(BIN / "lambda-produce"), "--quiet", "--truth", str(truth_file),
             "--seed", str(args.seed), *mixed_stream(args.rate, ACCOUNTS)],
            env=env,
        )  # fmt: skip
        results = scratch / "api.bin"
        targets = api_targets(ACCOUNTS, args.seed, scratch / "api.targets")
        t0 = time.time()
        load = subprocess.Popen(
            [vegeta(), "attack", f"-duration={seconds}s", f"-targets={targets}",
             f"-rate={args.api_rate}/s", "-timeout=10s", f"-output={results}"],
            env={k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")},
        )  # fmt: skip
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            samples.append(take_sample(layout, started))
            last = samples[-1]
            console.print(
                f"{elapsed / 60:6.1f} min  memory {sum(last.memory.values()) / MIB:7.0f} MiB  "
                f"data {sum(last.sizes.values()) / MIB:8.1f} MiB  "
                f"files {sum(last.files.values()):6d}  version {(last.batch_version or '-')[:17]}"
            )
            time.sleep(max(0.0, started + len(samples) * args.sample_s - time.monotonic()))
        samples.append(take_sample(layout, started))
        producer.send_signal(signal.SIGTERM)
        producer.wait(300)
        load.wait(120)
        stopped = time.monotonic()

        console.print("reading the topic back for the ground truth")
        log = read_log(settings, settings.topic)
        truth = GroundTruth.of(log, settings.dedup_horizon_ms)
        want = truth.summary()["count"]
        converge_s = convergence_s(api, want, stopped, 600)
        diffs_speed = answer_differences(api, truth)
        version = final_batch(client, layout, settings, max(r.timestamp for r in log))
        current = layout.read_current()
        assert current is not None
        below = [r for r in truth.valid.values() if r["kafka_ts"] < current.horizon_ms]
        batch_equal = batch_views(layout, version) == oracle_views(below, settings.dedup_horizon_ms)
        diffs_batch = answer_differences(api, truth)
        final = httpx.get(f"{api}/v1/totals", params=ALL_TIME, timeout=30).json()
        landing = check_landing(layout, truth)
        dlq = check_dlq(read_log(settings, settings.dlq_topic), truth, settings.topic)
        acked = read_truth(truth_file)
        # Complete versions (a manifest): a pruned version whose files newer versions still
        # name keeps its prefix, with a tombstone, until none does.
        versions_kept = sum(1 for complete in layout.version_ids().values() if complete)
    finally:
        with suppress(Exception):
            platform_cmd(env, "down", timeout=300)
    window_s = min(3600.0, samples[-1].at_s / 2)
    latencies = minute_latencies(results, t0)
    tail = [w for w in latencies if w["minute"] * 60 >= seconds - window_s]
    versions = [s.batch_version for s in samples if s.batch_version]
    return {
        "minutes": args.minutes,
        "rate": args.rate,
        "api_rate": args.api_rate,
        "seed": args.seed,
        "sample_s": args.sample_s,
        "batch_versions_published": len(set(versions)),
        "batch_versions_kept": versions_kept,
        "batch_keep_versions": settings.batch_keep_versions,
        **stream_figures(log, acked, truth, int(final["count"])),
        "converge_s": converge_s,
        "api_differences_before_batch": diffs_speed[:10],
        "api_differences_after_batch": diffs_batch[:10],
        "batch_version": version,
        "batch_views_equal_oracle": batch_equal,
        "events_from_batch": final["meta"].get("events_from_batch"),
        "landing": asdict(landing),
        "dlq": asdict(dlq),
        "targets": window_targets(samples, window_s),
        "api_last_window": {
            "requests": sum(w["requests"] for w in tail),
            "errors": sum(w["errors"] for w in tail),
            "p99_ms_median_of_minutes": median(w["p99_ms"] for w in tail) if tail else None,
            "p99_ms_worst_minute": max((w["p99_ms"] for w in tail), default=None),
        },
        "latency_by_minute": latencies,
        "samples": [asdict(s) for s in samples],
        "plots": draw(samples, latencies, window_s),
    }


def failures(f: dict[str, Any]) -> list[str]:
    """Every check of the fault runs' reckoning, and the soak's own, that did not hold."""
    checks = {
        **reckoning_checks(f),
        "more batch versions kept than the retention": (
            f["batch_versions_kept"] <= f["batch_keep_versions"] + 1  # + one being built
        ),
    }
    out = [what for what, held in checks.items() if not held]
    targets = f["targets"]
    out += [f"memory of {k} grew {v['growth']:.1%}" for k, v in targets["memory"].items()
            if not v["ok"]]  # fmt: skip
    out += [f"{k} grew from {v['start_mib']} to {v['end_mib']} MiB"
            for k, v in targets["sizes"].items() if not v["ok"]]  # fmt: skip
    return out


def print_tables(f: dict[str, Any]) -> None:
    targets = f["targets"]
    table = Table("service", "MiB at the window's start", "at its end", "growth", "ok",
                  title=f"memory over the last {targets['window_s'] / 60:.0f} min")  # fmt: skip
    for name, v in targets["memory"].items():
        g = "-" if v["growth"] is None else f"{v['growth']:+.1%}"
        table.add_row(name, str(v["start_mib"]), str(v["end_mib"]), g, "✓" if v["ok"] else "✗")
    console.print(table)
    table = Table("part", "MiB at the window's start", "at its end", "bound", "ok",
                  title="data directory over the same window")  # fmt: skip
    for name, v in targets["sizes"].items():
        table.add_row(name, str(v["start_mib"]), str(v["end_mib"]),
                      v["bound"], "✓" if v["ok"] else "✗")  # fmt: skip
    console.print(table)
    api = f["api_last_window"]
    console.print(
        f"events {f['expected_events']} expected, {f['api_events']} served; lost {f['lost']}, "
        f"double {f['double']}; API p99 per minute over the window: median "
        f"{api['p99_ms_median_of_minutes']} ms, worst {api['p99_ms_worst_minute']} ms, "
        f"{api['errors']} errors of {api['requests']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=120)
    parser.add_argument("--rate", type=int, default=500, help="events per second")
    parser.add_argument("--api-rate", type=int, default=100, help="API requests per second")
    parser.add_argument("--sample-s", type=float, default=60)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    exit_on_sigterm()
    scratch = Path(tempfile.mkdtemp(prefix="lambda-soak-"))
    try:
        figures = run(args, scratch / "data", scratch)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(scratch)], check=False)
    report = write_report("soak", figures)
    print_tables(figures)
    failed = failures(figures)
    for what in failed:
        console.print(f"[red]✗ {what}[/red]")
    console.print(f"report: {report}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
