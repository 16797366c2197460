"""Serving under load: wrk against summary and series on a populated platform while ingesting,
the same queries straight on DuckDB + SQLAlchemy as the floor, and end-to-end freshness.

    .venv/bin/python -m bench.serving_bench [--events 5000000] [--accounts 10000] [--seconds 20]

Populated = a synthetic landing zone of ``--events`` events over ``--accounts`` accounts,
recomputed by Spark and published; then a speed layer and a producer (200 events/s) run
during the wrk measurements. Freshness: events produced at 2,000/s while /v1/totals is polled;
the k-th event counts as visible when the total first reaches k.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx

from batch_layer.pipeline import publish_version, recompute
from batch_layer.validate import validate_version
from bench.common import Timer, bench_broker, bench_settings, percentile, write_report
from bench.synthetic import write_landing
from lambda_contracts.db import make_engine
from lambda_contracts.events import Transaction
from lambda_contracts.layout import Layout
from producer.cli import make_producer
from serving.batch_store import BatchStore
from serving.queries import Granularity, QueryService
from serving.speed_store import SpeedReader
from tests.support.pipeline import BIN, SpeedProcess, env_for, wait_until

PORT = 18100
START = 1_795_000_000_000
SPAN = 2 * 86_400_000
BUCKET_MS = 300_000

LUA = """
local kind = "{kind}"
request = function()
  local account = 100000 + math.random(0, {accounts} - 1)
  local path = "/v1/accounts/" .. account .. "/" .. kind .. "?start={start}&end={end}"
  if kind == "series" then path = path .. "&granularity=hour" end
  return wrk.format("GET", path)
end
"""


def run_wrk(base: str, kind: str, accounts: int, seconds: int, tmp: Path) -> dict[str, float]:
    script = tmp / f"{kind}.lua"
    script.write_text(LUA.format(kind=kind, accounts=accounts, start=START, end=START + SPAN))
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def floor(queries: QueryService, kind: str, accounts: int, n: int = 2000) -> dict[str, float]:
    latencies = []
    rng = random.Random(5)
    with Timer() as total:
        for _ in range(n):
            account = str(100000 + rng.randrange(accounts))
            started = time.perf_counter()
            snap = queries.snapshot()
            if kind == "summary":
                queries.summary(snap, START, START + SPAN, account)
            else:
                queries.series(snap, START, START + SPAN, Granularity.hour, account)
            latencies.append((time.perf_counter() - started) * 1000)
    return {
        "queries_per_s_one_thread": round(n / total.seconds),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
    }


def freshness(settings, base: str, rate: float, seconds: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    window = {"start": now - 3_600_000, "end": now + 3_600_000}
    baseline = httpx.get(f"{base}/v1/totals", params=window).json()["count"]
    total = int(rate * seconds)
    producer = make_producer(settings.bootstrap_servers, linger_ms=0)
    sent_at: list[float] = []
    seen: list[tuple[float, int]] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client() as client:
            while not done.is_set():
                count = client.get(f"{base}/v1/totals", params=window).json()["count"]
                seen.append((time.time() * 1000, count - baseline))
                time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    start = time.monotonic()
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        event = Transaction(
            TransactionID=f"fresh-{i}",
            CreatedTime=int(time.time() * 1000),
            SourceAccountID=str(100000 + i % 997),
            TargetAccountID="200000",
            Amount=Decimal("10.00"),
        )
        producer.send(settings.topic, key=event.key, value=event.to_json_bytes())
        sent_at.append(time.time() * 1000)
    producer.flush()
    wait_until(lambda: seen and seen[-1][1] >= total, 60, "all events visible")
    done.set()
    poller.join()
    latencies, j = [], 0
    for k, at in enumerate(sent_at, start=1):
        while j < len(seen) and seen[j][1] < k:
            j += 1
        if j < len(seen):
            latencies.append(seen[j][0] - at)
    return {
        "rate": rate,
        "events": total,
        "p50_ms": round(percentile(latencies, 50)),
        "p99_ms": round(percentile(latencies, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    with bench_broker() as broker, tempfile.TemporaryDirectory(prefix="lambda-bench-serve-") as t:
        tmp = Path(t)
        settings = bench_settings(broker, tmp / "data", "bench-serving", bucket_ms=BUCKET_MS)
        layout = Layout(settings.data_dir)
        write_landing(
            layout, args.events, START, SPAN, settings.partitions, BUCKET_MS, accounts=args.accounts
        )
        horizon = START + SPAN + BUCKET_MS
        recompute(settings, horizon, "vbench", "bench")
        validate_version(layout, "vbench")
        publish_version(settings, "vbench")
        speed = SpeedProcess(settings).start()
        server = subprocess.Popen(
            [str(BIN / "lambda-serve")],
            env=env_for(settings, LAMBDA_API_PORT=str(PORT)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{PORT}"
        try:
            wait_until(lambda: _ok(base), 60, "the API")
            httpx.get(
                f"{base}/v1/accounts/100000/summary",
                params={"start": START, "end": START + SPAN},
                timeout=60,
            )  # load version
            ingest = subprocess.Popen(
                [str(BIN / "lambda-produce"), "--rate", "200", "--duration", "0", "--quiet"],
                env=env_for(settings),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wrk = {
                kind: run_wrk(base, kind, args.accounts, args.seconds, tmp)
                for kind in ("summary", "series")
            }
            ingest.terminate()
            ingest.wait(30)
            engine = make_engine(settings.speed_store_url)
            queries = QueryService(
                BatchStore(layout),
                SpeedReader(engine, settings.topic),
                partitions=settings.partitions,
            )
            floors = {kind: floor(queries, kind, args.accounts) for kind in ("summary", "series")}
            fresh = freshness(settings, base, 2000, 15)
        finally:
            server.terminate()
            server.wait(30)
            speed.terminate()
    write_report(
        "serving",
        {
            "command": f"python -m bench.serving_bench --events {args.events} "
            f"--accounts {args.accounts} --seconds {args.seconds}",
            "events": args.events,
            "accounts": args.accounts,
            "wrk_http_while_ingesting": wrk,
            "floor_duckdb_sqlalchemy_no_http": floors,
            "end_to_end_freshness": fresh,
            "wrk": "2 threads, 16 connections, random accounts, range = the 2 days of data",
        },
    )


def _ok(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
