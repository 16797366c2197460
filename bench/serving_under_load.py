"""Serving latency while the platform works: the whole local stack, a stream, and batch runs.

    .venv/bin/python -m bench.serving_under_load [--events 1000000] [--rates 500,1000]
        [--seconds 240] [--batch-at 30] [--stream 200] [--closed-seconds 20] [--closed-rounds 3]

``lambda-platform up`` (DEMO=0, 1-minute ingest buckets, no scheduled batch runs) on a
temporary data directory, with a 200 events/s stream (``--stream``) the whole time. Then:

1. ``--events`` events are produced as fast as they go and counted by the speed layer, and
   a batch run absorbs them (a warm-up: the first spark-submit of a stack is slower).
2. Idle: another ``--events`` are produced and counted, and a batch run (Airflow's
   ``lambda_batch``, what ``make batch`` triggers) absorbs them with no query load: its time.
3. For each rate of ``--rates``: another ``--events``, then vegeta attacks random
   ``/v1/accounts/{id}/summary`` at that rate for ``--seconds`` (open loop: requests leave on
   schedule whatever the answers do; 5 s timeout), and ``--batch-at`` seconds in a batch run
   over the increment starts. The p99 of every 5-second window, the errors, when the batch ran
   and when CURRENT moved are printed and drawn (``bench/results/serving_under_load-<rate>.png``).
   Meanwhile one probe event a second goes to an account of its own, and the time until the
   API counts it is the speed layer's freshness.
4. Closed loop while ingesting: wrk as fast as 16 connections go on summary, then on
   ``/healthz`` of the same server, ``--closed-rounds`` times; the ratio of their rates in
   each round and the median (wrk: ``apt-get install -y wrk``).

The figures go to ``bench/results/serving_under_load.json``. Ports are the local defaults
(Kafka 9092, API 8000, Airflow 8080): nothing else may run the platform meanwhile.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS, percentile, write_report
from bench.serving_bench import vegeta, wrk
from infra.airflow_env import AIRFLOW_PORT, API_HOST, admin_password
from infra.trigger_batch import AirflowClient
from lambda_contracts.events import Transaction
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from producer.cli import make_producer

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACCOUNTS = 10_000
WINDOW_S = 5
PROBE_ACCOUNT = "probe-freshness"
BASE = "http://127.0.0.1:8000"


def stack_env(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DEMO": "0",
        "LAMBDA_DATA_DIR": str(data_dir),
        "LAMBDA_BUCKET_MS": "60000",
        "LAMBDA_BATCH_SCHEDULE_MINUTES": "1440",
        "LAMBDA_BATCH_KEEP_VERSIONS": "2",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }


@contextmanager
def platform(env: dict[str, str]) -> Iterator[None]:
    """``lambda-platform up`` for the block, ``down`` after it whatever happens."""
    subprocess.run([str(BIN / "lambda-platform"), "up"], env=env, check=True, cwd=ROOT)
    try:
        yield
    finally:
        subprocess.run([str(BIN / "lambda-platform"), "down"], env=env, cwd=ROOT)


def produce(env: dict[str, str], count: int, rate: float, seed: int) -> subprocess.Popen:
    """The demo producer: ``count`` events (0: endless) at ``rate`` per second (0: flat out)."""
    command = [str(BIN / "python"), "-m", "producer.cli", "--count", str(count)]
    command += ["--rate", str(rate), "--accounts", str(ACCOUNTS), "--seed", str(seed)]
    command += ["--id-prefix", f"bench-{seed}-", "--quiet"]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


def freshness() -> dict[str, Any]:
    return httpx.get(f"{BASE}/v1/freshness", timeout=30).json()


def total_count() -> int:
    answer = httpx.get(f"{BASE}/v1/totals", params={"start": 0, "end": 4_000_000_000_000})
    return int(answer.json()["count"])


def wait_counted(at_least: int, timeout_s: float = 600) -> float:
    """Seconds until the API counts ``at_least`` events and the speed layer has no lag."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            lag = sum(p["lag"] or 0 for p in freshness()["speed_lag"])
            if lag == 0 and total_count() >= at_least:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"not {at_least} events counted after {timeout_s} s")


def increment(env: dict[str, str], events: int, seed: int) -> dict[str, float]:
    """Produce ``events`` flat out, wait until they are counted and their buckets sealed."""
    before = total_count()
    started = time.monotonic()
    producer = produce(env, events, 0, seed)
    producer.wait()
    produced_s = time.monotonic() - started
    counted_s = wait_counted(before + events)
    # One-minute buckets: the increment's last bucket closes within a minute (and the grace).
    time.sleep(65)
    return {"produce_s": round(produced_s, 1), "counted_s": round(counted_s, 1)}


@dataclass
class BatchRun:
    """One ``lambda_batch`` run through Airflow's API, timed; CURRENT's moves watched."""

    client: AirflowClient
    layout: Layout
    started: float = 0.0
    ended: float = 0.0
    published: list[float] = field(default_factory=list)
    state: str = ""

    def run(self) -> None:
        before = self.layout.read_current()
        self.started = time.time()
        run_id = self.client.trigger("lambda_batch")
        while True:
            current = self.layout.read_current()
            if current != before:
                self.published.append(time.time())
                before = current
            self.state = self.client.run_state("lambda_batch", run_id)
            if self.state in ("success", "failed"):
                break
            time.sleep(0.5)
        self.ended = time.time()
        if self.state != "success":
            raise SystemExit(f"lambda_batch run {run_id} ended as {self.state}")

    @property
    def seconds(self) -> float:
        return round(self.ended - self.started, 1)


def wait_no_runs(client: AirflowClient) -> None:
    """Until no lambda_batch run is queued or running (unpausing may have scheduled one)."""
    while True:
        runs = client._request(
            "GET", "/api/v2/dags/lambda_batch/dagRuns", params={"state": ["queued", "running"]}
        ).json()["dag_runs"]
        if not runs:
            return
        time.sleep(2)


class Probe(threading.Thread):
    """One event a second to an account of its own; the time until the API counts it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (sent at, seconds until counted)

    def count(self, client: httpx.Client) -> int:
        path = f"{BASE}/v1/accounts/{PROBE_ACCOUNT}/summary"
        answer = client.get(path, params={"start": 0, "end": 4_000_000_000_000}, timeout=10)
        return int(answer.json()["count"])

    def run(self) -> None:
        producer = make_producer(self.settings.kafka_client_config, linger_ms=0)
        with httpx.Client() as client:
            seen = self.count(client)
            i = 0
            while not self.stop.is_set():
                i += 1
                event = Transaction(
                    TransactionID=f"probe-{time.time_ns()}",
                    CreatedTime=int(time.time() * 1000),
                    SourceAccountID=PROBE_ACCOUNT,
                    TargetAccountID="200000",
                    Amount=Decimal("1.00"),
                )
                sent = time.time()
                producer.send(self.settings.topic, key=event.key, value=event.to_json_bytes())
                producer.flush()
                while time.time() - sent < 30 and self.count(client) <= seen:
                    time.sleep(0.02)
                self.samples.append((sent, time.time() - sent))
                seen += 1
                self.stop.wait(max(0.0, 1 - (time.time() - sent)))
        producer.close()


def attack(rate: int, seconds: int, out: Path, seed: int, path: str | None = None) -> None:
    """vegeta at ``rate`` (0: closed loop, 16 workers) for ``seconds``, results to ``out``."""
    rng = random.Random(seed)
    targets = out.with_suffix(".targets")
    n = max(rate, 2000) * seconds
    with targets.open("w") as f:
        for _ in range(n if path is None else 1):
            target = path or (
                f"/v1/accounts/{100000 + rng.randrange(ACCOUNTS)}/summary?start=0&end=4000000000000"
            )
            f.write(f"GET {BASE}{target}\n\n")
    command = [vegeta(), "attack", f"-duration={seconds}s", f"-targets={targets}"]
    command += ["-timeout=5s", f"-output={out}"]
    command += ["-rate=0", "-max-workers=16"] if rate == 0 else [f"-rate={rate}/s", "-workers=64"]
    subprocess.run(command, check=True)


def results(out: Path) -> list[tuple[float, float, bool]]:
    """(sent at in unix s, latency in ms, ok) of every request of a vegeta results file."""
    text = subprocess.run(
        [vegeta(), "encode", "-to=csv", str(out)], capture_output=True, check=True, text=True
    ).stdout
    rows = []
    for row in csv.reader(io.StringIO(text)):
        sent, code, latency = int(row[0]) / 1e9, int(row[1]), int(row[2]) / 1e6
        rows.append((sent, latency, code == 200 and not row[5]))
    return rows


def windows(rows: list[tuple[float, float, bool]], t0: float) -> list[dict[str, float]]:
    """p99 and errors of every ``WINDOW_S`` window of send times from ``t0``."""
    by_window: dict[int, list[tuple[float, bool]]] = {}
    for sent, latency, ok in rows:
        by_window.setdefault(int((sent - t0) // WINDOW_S), []).append((latency, ok))
    table = []
    for w in sorted(by_window):
        lat = [latency for latency, _ in by_window[w]]
        table.append(
            {
                "t_s": w * WINDOW_S,
                "requests": len(lat),
                "p50_ms": round(percentile(lat, 50), 2),
                "p99_ms": round(percentile(lat, 99), 2),
                "errors": sum(not ok for _, ok in by_window[w]),
            }
        )
    return table


def draw(rate: int, table: list[dict[str, float]], marks: dict[str, float], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    t = [w["t_s"] for w in table]
    ax.plot(t, [w["p99_ms"] for w in table], label="p99 per 5 s", color="tab:red")
    ax.plot(t, [w["p50_ms"] for w in table], label="p50 per 5 s", color="tab:blue")
    errors = [w["t_s"] for w in table if w["errors"]]
    if errors:
        ax.scatter(errors, [1] * len(errors), marker="x", color="black", label="errors")
    for name, at in marks.items():
        ax.axvline(at, linestyle="--", color="gray")
        ax.annotate(name, (at, 1), rotation=90, fontsize=8, va="bottom")
    ax.axhline(25, color="tab:green", linewidth=0.8, label="25 ms")
    ax.set_yscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"summary at {rate} req/s, a batch run inside")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def under_load(
    rate: int, args: argparse.Namespace, batch: BatchRun, probe: Probe, tmp: Path
) -> dict[str, Any]:
    """vegeta at ``rate`` with a batch run started ``args.batch_at`` seconds in."""
    out = tmp / f"attack-{rate}.bin"
    t0 = time.time()
    runner = threading.Timer(args.batch_at, batch.run)
    runner.start()
    attack(rate, args.seconds, out, seed=rate)
    runner.join()
    rows = results(out)
    table = windows(rows, t0)
    marks = {"batch start": batch.started - t0, "batch end": batch.ended - t0}
    marks |= {f"publish {i + 1}": at - t0 for i, at in enumerate(batch.published)}
    RESULTS.mkdir(exist_ok=True)
    draw(rate, table, marks, RESULTS / f"serving_under_load-{rate}.png")
    in_batch = [s for at, s in probe.samples if batch.started <= at <= batch.ended]
    lat = [latency for _, latency, _ in rows]
    for w in table:
        print(f"  {rate}/s t={w['t_s']:>4}s p99 {w['p99_ms']:>8} ms  errors {w['errors']}")
    return {
        "rate": rate,
        "requests": len(rows),
        "errors": sum(not ok for *_, ok in rows),
        "p50_ms": round(percentile(lat, 50), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "max_ms": round(max(lat), 2),
        "worst_window_p99_ms": max(w["p99_ms"] for w in table),
        "batch_s": batch.seconds,
        "marks_s": {k: round(v, 1) for k, v in marks.items()},
        "freshness_in_batch_p99_s": round(percentile(in_batch, 99), 3) if in_batch else None,
        "freshness_in_batch_max_s": round(max(in_batch), 3) if in_batch else None,
        "windows": table,
    }


# Both routes' requests are made by a Lua function, so wrk does the same work per request on
# either (a static request costs it less than one made per call); only the server differs.
CLOSED_LUA = """
math.randomseed({seed})
request = function()
  if "{route}" == "healthz" then return wrk.format("GET", "/healthz") end
  local account = 100000 + math.random(0, {accounts} - 1)
  return wrk.format("GET", "/v1/accounts/" .. account .. "/summary?start=0&end=4000000000000")
end
"""


def closed_run(seconds: int, args: list[str]) -> dict[str, float]:
    """wrk, 2 threads and 16 connections as fast as they go: requests/s, non-2xx and socket
    errors, and wrk's own CPU per request (it shares the cores with the server)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [wrk(), "-t2", "-c16", f"-d{seconds}s", *args], capture_output=True, text=True, check=True
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0) + bool(socket_errors),
        "client_cpu_us_per_request": round(1e6 * cpu_s / max(requests, 1), 1),
    }


def closed_loop(seconds: int, rounds: int, tmp: Path) -> dict[str, Any]:
    """Summary (a random account per request, the whole range) against ``/healthz`` of the
    same server, as fast as 16 connections go, in alternating rounds: each round's ratio and
    their median.

    wrk, not vegeta: the load generator shares the two cores with the server, and vegeta's
    own CPU per request grew with the route (123-146 us on summary against 53-69 us on
    /healthz, measured with both on one stack), which lowered the ratio by what the client
    spent, not the server. wrk spends 13-35 us per request on either."""
    scripts = {}
    for route in ("summary", "healthz"):
        scripts[route] = tmp / f"closed-{route}.lua"
        scripts[route].write_text(CLOSED_LUA.format(seed=7, accounts=ACCOUNTS, route=route))
    runs: list[dict[str, Any]] = []
    for _ in range(rounds):
        summary = closed_run(seconds, ["-s", str(scripts["summary"]), BASE])
        healthz = closed_run(seconds, ["-s", str(scripts["healthz"]), BASE])
        ratio = round(summary["per_s"] / healthz["per_s"], 3)
        print(
            f"closed loop: summary {summary['per_s']:,.0f}/s, /healthz "
            f"{healthz['per_s']:,.0f}/s, ratio {ratio}",
            flush=True,
        )
        runs.append({"summary": summary, "healthz": healthz, "summary_over_healthz": ratio})
    return {
        "rounds": runs,
        "summary_over_healthz_median": statistics.median(r["summary_over_healthz"] for r in runs),
        "errors": sum(r[side]["errors"] for r in runs for side in ("summary", "healthz")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rates", default="500,1000")
    parser.add_argument("--seconds", type=int, default=240)
    parser.add_argument("--batch-at", type=float, default=30)
    parser.add_argument("--stream", type=float, default=200)
    parser.add_argument("--closed-seconds", type=int, default=20)
    parser.add_argument("--closed-rounds", type=int, default=3)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]
    with tempfile.TemporaryDirectory(prefix="lambda-under-load-") as tmp_name:
        tmp = Path(tmp_name)
        env = stack_env(tmp / "data")
        settings = Settings(data_dir=tmp / "data", bucket_ms=60_000)
        layout = Layout.of(settings)
        figures: dict[str, Any] = {"events_per_increment": args.events, "stream": args.stream}
        with platform(env):
            stream = produce(env, 0, args.stream, seed=1)
            probe = Probe(settings)
            try:
                client = AirflowClient(
                    f"http://{API_HOST}:{AIRFLOW_PORT}", admin_password(settings)
                )
                figures["warm_up_increment"] = increment(env, args.events, seed=2)
                warm = BatchRun(client, layout)
                warm.run()
                wait_no_runs(client)
                figures["warm_up_batch_s"] = warm.seconds
                figures["idle_increment"] = increment(env, args.events, seed=3)
                idle = BatchRun(client, layout)
                idle.run()
                figures["idle_batch_s"] = idle.seconds
                print(f"idle batch run: {idle.seconds} s")
                probe.start()
                figures["loads"] = []
                for i, rate in enumerate(rates):
                    figures[f"increment_{rate}"] = increment(env, args.events, seed=10 + i)
                    run = under_load(rate, args, BatchRun(client, layout), probe, tmp)
                    run["batch_over_idle"] = round(run["batch_s"] / idle.seconds, 2)
                    figures["loads"].append(run)
                figures["closed_loop"] = closed_loop(args.closed_seconds, args.closed_rounds, tmp)
                figures["freshness_all_p99_s"] = round(
                    percentile([s for _, s in probe.samples], 99), 3
                )
            finally:
                probe.stop.set()
                stream.terminate()
                stream.wait()
    write_report("serving_under_load", figures)


if __name__ == "__main__":
    main()
