"""Serving under load on a populated platform while ingesting: wrk (closed loop, as fast as it
goes) and vegeta (open loop, a fixed rate) against summary and hour series; the same queries
straight on DuckDB + SQLAlchemy as the floor; end-to-end freshness.

    .venv/bin/python -m bench.serving_bench [--events 5000000] [--accounts 10000] [--seconds 20]
        [--rate 500] [--open-seconds 20] [--workers 1,2] [--baseline-ref main]
        [--batch-from DIR] [--views-file FILE --kinds summary,series,view:NAME:Dimension]
        [--env-config NAME:LAMBDA_X=V[,LAMBDA_Y=W]]...

Populated = a synthetic landing zone of ``--events`` events over ``--accounts`` accounts,
recomputed by Spark and published; then a speed layer and a producer (200 events/s) run
during the HTTP measurements. Each server configuration (``--workers``: uvicorn worker counts
of this code; ``--baseline-ref``: the serving code of a git ref, one worker, for a side-by-side
run; ``--env-config``: this code, one worker, with other settings) is started fresh —
batch-part cache cold — and measured in this order: open loop summary, open loop series, wrk
summary, wrk series. The open loop is vegeta (``vegeta attack -rate``):
requests leave on schedule whatever the answers do (no coordinated omission; vegeta adds
workers while answers are outstanding), each to a random account. Freshness: events produced
at 2,000/s while /v1/totals is polled; the k-th event counts as visible when the total first
reaches k.

``--batch-from DIR``: reuse the published batch version kept in DIR by an earlier run of the
same size (the first run with DIR writes it), skipping the landing zone and Spark. Ports:
``LAMBDA_BENCH_KAFKA_PORT`` (broker), ``LAMBDA_BENCH_SERVING_PORT`` (API, 18100).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
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

PORT = int(os.environ.get("LAMBDA_BENCH_SERVING_PORT", "18100"))
SOURCE = Path(__file__).resolve().parents[1]
START = 1_795_000_000_000
SPAN = 2 * 86_400_000
BUCKET_MS = 300_000

LUA = """
request = function()
  local account = 100000 + math.random(0, {accounts} - 1)
  return wrk.format("GET", "{before}" .. account .. "{after}")
end
"""


def _around(kind: str) -> tuple[str, str]:
    """A kind's path before and after the account: ``summary``, ``series`` (hour), or
    ``view:NAME:Dimension`` (``GET /v1/views/NAME`` per key of Dimension, hour granularity)."""
    window = f"start={START}&end={START + SPAN}"
    if kind.startswith("view:"):
        _, name, dimension = kind.split(":")
        return f"/v1/views/{name}?{window}&granularity=hour&{dimension}=", ""
    after = f"/{kind}?{window}" + ("&granularity=hour" if kind == "series" else "")
    return "/v1/accounts/", after


def _path(kind: str, account: int) -> str:
    before, after = _around(kind)
    return f"{before}{account}{after}"


def _label(kind: str) -> str:
    return kind.replace(":", "_")


def vegeta() -> str:
    found = shutil.which("vegeta") or str(Path.home() / "go" / "bin" / "vegeta")
    if not Path(found).exists():
        raise SystemExit("vegeta not found: go install github.com/tsenart/vegeta/v12@latest")
    return found


def wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    return found


def run_open_loop(
    base: str, kind: str, accounts: int, rate: int, seconds: int, tmp: Path, seed: int
) -> dict[str, float]:
    """vegeta at a fixed ``rate``: latency percentiles of requests sent on schedule."""
    rng = random.Random(seed)
    n = rate * seconds
    picks = [100000 + rng.randrange(accounts) for _ in range(n)]
    targets = tmp / f"{_label(kind)}-{seed}.targets"
    targets.write_text("".join(f"GET {base}{_path(kind, a)}\n\n" for a in picks))
    attack = subprocess.run(
        [
            vegeta(),
            "attack",
            f"-rate={rate}/s",
            f"-duration={seconds}s",
            f"-targets={targets}",
            "-timeout=10s",
            "-workers=32",
        ],
        capture_output=True,
        check=True,
    ).stdout
    report = json.loads(
        subprocess.run(
            [vegeta(), "report", "-type=json"], input=attack, capture_output=True, check=True
        ).stdout
    )
    lat = report["latencies"]
    seen: set[int] = set()
    repeats = 0
    for a in picks:
        repeats += a in seen
        seen.add(a)
    return {
        "rate_sent": round(report["rate"], 1),
        "throughput": round(report["throughput"], 1),
        "success": report["success"],
        "p50_ms": round(lat["50th"] / 1e6, 2),
        "p90_ms": round(lat["90th"] / 1e6, 2),
        "p99_ms": round(lat["99th"] / 1e6, 2),
        "max_ms": round(lat["max"] / 1e6, 2),
        "requests": report["requests"],
        "repeated_account_share": round(repeats / n, 3),  # an upper bound of cache hits
    }


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid`` (the server
    and its workers): what an answer costs, whatever else the machine is busy with."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(base: str, kind: str, accounts: int, seconds: int, tmp: Path) -> dict[str, float]:
    script = tmp / f"{_label(kind)}.lua"
    before, after = _around(kind)
    script.write_text(LUA.format(accounts=accounts, before=before, after=after))
    out = subprocess.run(
        [wrk(), "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def floor(queries: QueryService, kind: str, accounts: int, n: int = 2000) -> dict[str, float]:
    latencies = []
    rng = random.Random(5)
    queries.snapshot()  # loads the version: not part of any query's time
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
    producer = make_producer(settings.kafka_client_config, linger_ms=0)
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


def populate(settings, layout: Layout, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    """Landing zone + Spark + publish, or the batch of an earlier run of the same size."""
    keep = (
        Path(args.batch_from)
        / f"batch-{args.events}-{args.accounts}-{Path(args.views_file or 'builtin').stem}"
        if args.batch_from
        else None
    )
    if keep is not None and (keep / "CURRENT").exists():
        shutil.copytree(keep, layout.data_dir / "batch")
        return
    write_landing(
        layout, args.events, START, SPAN, settings.partitions, BUCKET_MS, accounts=args.accounts
    )
    end = START + SPAN
    horizon = end - end % BUCKET_MS + BUCKET_MS  # on a bucket boundary, above every event
    recompute(settings, horizon, "vbench", "bench")
    validate_version(layout, "vbench")
    publish_version(settings, "vbench")
    if keep is not None:
        shutil.copytree(layout.data_dir / "batch", keep)


# A server measured: its name, the code it runs, its workers, and settings of its own.
Config = tuple[str, Path, int, dict[str, str]]


def baseline_source(ref: str, tmp: Path) -> Path:
    """The code of git ``ref`` (its serving layer is what runs), extracted under ``tmp``."""
    out = tmp / f"src-{re.sub(r'[^A-Za-z0-9_.-]', '_', ref)}"
    out.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(SOURCE), "archive", ref], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def start_server(
    settings, source: Path, workers: int, log: Path, extra: dict[str, str]
) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    env = env_for(
        settings,
        LAMBDA_API_PORT=str(PORT),
        LAMBDA_API_WORKERS=str(workers),
        PYTHONPATH=str(source),
        **extra,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.main"],
        env=env,
        cwd=source,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{PORT}"
    wait_until(lambda: _ok(base), 120, "the API")
    # Loads the version in the old code (the new one loads it in every worker at start-up).
    httpx.get(f"{base}{_path('summary', 100000)}", timeout=120).raise_for_status()
    return server


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)  # its own session: the workers go with it
        server.wait(10)
    wait_until(lambda: not _ok(f"http://127.0.0.1:{PORT}"), 30, "the API port to close")


def drain(base: str) -> None:
    """Wait out a backlog an overloaded run left queued in the server."""
    wait_until(lambda: _ok(base, timeout=0.5), 120, "the server to drain its backlog")


def measure(settings, config: Config, args: argparse.Namespace, tmp: Path, i: int):  # type: ignore[no-untyped-def]
    """wrk on one server, then the open loop on a fresh one (its batch-part cache cold)."""
    base = f"http://127.0.0.1:{PORT}"
    out: dict[str, dict[str, float]] = {}
    _, source, workers, extra = config
    server = start_server(settings, source, workers, tmp / f"serving-{i}-closed.log", extra)
    try:
        for kind in args.kinds:
            cpu = group_cpu_seconds(server.pid)
            result = out[f"wrk_{_label(kind)}"] = run_wrk(
                base, kind, args.accounts, args.seconds, tmp
            )
            spent = group_cpu_seconds(server.pid) - cpu
            result["server_cpu_ms_per_request"] = round(
                1000 * spent / max(result["requests"], 1), 3
            )
    finally:
        stop_server(server)
    server = start_server(settings, source, workers, tmp / f"serving-{i}-open.log", extra)
    try:
        for seed, kind in enumerate(args.kinds):
            out[f"open_loop_{_label(kind)}_at_{args.rate}"] = run_open_loop(
                base, kind, args.accounts, args.rate, args.open_seconds, tmp, seed
            )
            drain(base)
    except BaseException:
        stop_server(server)
        raise
    return out, server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=20, help="each wrk run")
    parser.add_argument("--rate", type=int, default=500, help="open-loop requests per second")
    parser.add_argument("--open-seconds", type=int, default=20, help="each open-loop run")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure")
    parser.add_argument("--baseline-ref", default=None, help="also measure this git ref's serving")
    parser.add_argument("--batch-from", default=None, help="keep/reuse the published batch here")
    parser.add_argument("--no-freshness", action="store_true")
    parser.add_argument(
        "--kinds",
        default="summary,series",
        help="queries measured: summary, series, view:NAME:Dimension (a declared view per key)",
    )
    parser.add_argument("--views-file", default=None, help="the platform's views file")
    parser.add_argument(
        "--env-config",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE[,VAR=VALUE]",
        help="also measure this code, 1 worker, with these settings (e.g. "
        "history-off:LAMBDA_API_HISTORY_SAMPLE_S=0)",
    )
    args = parser.parse_args()
    args.kinds = args.kinds.split(",")
    vegeta()
    workers = [int(w) for w in args.workers.split(",")]
    base = f"http://127.0.0.1:{PORT}"
    with bench_broker() as broker, tempfile.TemporaryDirectory(prefix="lambda-bench-serve-") as t:
        tmp = Path(t)
        views = {"views_file": Path(args.views_file).resolve()} if args.views_file else {}
        settings = bench_settings(
            broker, tmp / "data", "bench-serving", bucket_ms=BUCKET_MS, **views
        )
        layout = Layout.of(settings)
        populate(settings, layout, args)
        configs: list[Config] = [(f"workers={w}", SOURCE, w, {}) for w in workers]
        if args.baseline_ref:
            source = baseline_source(args.baseline_ref, tmp)
            configs.insert(0, (f"{args.baseline_ref} (1 worker)", source, 1, {}))
        for spec in args.env_config:
            name, _, assignments = spec.partition(":")
            extra = dict(a.split("=", 1) for a in assignments.split(",") if a)
            configs.append((f"{name} (1 worker)", SOURCE, 1, extra))
        speed = SpeedProcess(settings).start()
        ingest = subprocess.Popen(
            [str(BIN / "lambda-produce"), "--rate", "200", "--duration", "0", "--quiet"],
            env=env_for(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        http: dict[str, dict[str, dict[str, float]]] = {}
        fresh: dict[str, float] | None = None
        try:
            for i, config in enumerate(configs):
                name = config[0]
                http[name], server = measure(settings, config, args, tmp, i)
                print(name, json.dumps(http[name]), flush=True)
                try:
                    if i == len(configs) - 1 and not args.no_freshness:
                        ingest.terminate()
                        ingest.wait(30)
                        fresh = freshness(settings, base, 2000, 15)
                finally:
                    stop_server(server)
            ingest.terminate()
            ingest.wait(30)
            engine = make_engine(settings.speed_store_url)
            queries = QueryService(
                BatchStore(layout),
                SpeedReader(engine, settings.topic),
                partitions=settings.partitions,
            )
            floors = {
                kind: floor(queries, kind, args.accounts)
                for kind in args.kinds
                if kind in ("summary", "series")
            }
        finally:
            ingest.kill()
            speed.terminate()
    write_report(
        "serving",
        {
            "command": "python -m bench.serving_bench " + " ".join(sys.argv[1:]),
            "events": args.events,
            "accounts": args.accounts,
            "http_while_ingesting": http,
            "floor_duckdb_sqlalchemy_no_http_no_cache": floors,
            "end_to_end_freshness": fresh,
            "wrk": "2 threads, 16 connections, random accounts, range = the 2 days of data",
            "open_loop": f"vegeta attack -rate={args.rate}/s -duration={args.open_seconds}s, "
            "a random account per request, range = the 2 days of data",
        },
    )


def _ok(base: str, timeout: float = 1) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
