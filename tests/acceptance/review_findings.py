"""Issue 32's acceptance, checked from outside against a running local platform.

    export LAMBDA_BUCKET_MS=60000 LAMBDA_BATCH_KEEP_VERSIONS=2
    DEMO=0 make up
    .venv/bin/python -m tests.acceptance.review_findings

It talks to the platform the way a user does: a plain kafka-python producer, HTTP to the
serving API and the speed processes' ``/readyz``, Airflow's REST API, and the ``lambda-batch``
command. The oracle is the list of events this script had acknowledged by the broker: every
valid one counts once, whatever happened meanwhile. Three parts (about 20 minutes):

1. poison values between valid events: ``"Amount":"\\xff"``, an unknown member ``"note":"\\xff"``,
   a member name ``"\\xc0\\xaf"``, an invalid record with a 3 MB gzip-compressed key → the API
   exact, exactly 4 new dead letters, no speed process restarted, every ``/readyz`` ok;
2. one event in a transaction held open 150 s, past its bucket's end, then committed → counted
   by the speed view within 90 s and still after a ``lambda-batch run``; then 200 s idle
   behind the commit marker → no restart;
3. while events flow, one ``lambda-batch run`` and two ``lambda_rebuild`` DAG runs; then a
   rollback to every version ``lambda-batch list`` shows as validated → each refused with a
   clear message and CURRENT unchanged, or the API exact on it; after ``resume`` and a run,
   exact.

Arguments name the parts to run (default: all three, in order). Prints each step and ends
with ``N passed, N failed``; exits 1 if any check failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from infra.airflow_env import AIRFLOW_PORT, API_HOST, admin_password
from infra.trigger_batch import AirflowClient
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings, get_settings
from tests.support.pipeline import BIG_KEY, gzip_producer

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
API = os.environ.get("LAMBDA_API_URL", "http://127.0.0.1:8000")
ALL_TIME = {"start": 0, "end": 253402300800000}


@dataclass
class Run:
    """What was sent and acknowledged, and the verdict of every check."""

    settings: Settings
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    count: int = 0
    cents: int = 0
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, ok: bool, what: str) -> bool:
        (self.passed if ok else self.failed).append(what)
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        return ok

    def acked(self, amount_cents: int) -> None:
        with self.lock:
            self.count += 1
            self.cents += amount_cents


def event(run: Run, n: int, cents: int, created_ms: int | None = None) -> tuple[bytes, bytes]:
    """A valid event's key and value (the Amount a JSON number with two decimals)."""
    account = f"acc-{run.tag}-{n % 5}"
    head = {
        "TransactionID": f"{run.tag}-{n}",
        "CreatedTime": created_ms or int(time.time() * 1000),
        "SourceAccountID": account,
        "TargetAccountID": "t",
    }
    value = json.dumps(head)[:-1] + f', "Amount": {Decimal(cents) / 100:.2f}}}'
    return account.encode(), value.encode()


def totals() -> tuple[int, int]:
    """The API's all-time count and sum (in cents)."""
    body = httpx.get(f"{API}/v1/totals", params=ALL_TIME, timeout=10).json()
    return int(body["count"]), round(Decimal(str(body["sum"])) * 100)


def landing_watermark() -> int:
    return int(httpx.get(f"{API}/v1/freshness", timeout=10).json()["landing_watermark_ms"] or 0)


def answer_horizon() -> int:
    """The horizon of the version answers read now."""
    body = httpx.get(f"{API}/v1/totals", params=ALL_TIME, timeout=10).json()
    return int(body["meta"]["batch_horizon_ms"] or 0)


def current_version() -> str | None:
    return httpx.get(f"{API}/v1/freshness", timeout=10).json().get("batch_version")


def wait(cond: Callable[[], bool], seconds: float, step: float = 1.0) -> float | None:
    """Seconds until ``cond()`` held, or None if it never did within ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if cond():
                return time.monotonic() - started
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(step)
    return None


def speed_pids(settings: Settings) -> dict[str, int]:
    """The speed processes' pids as the platform recorded them (``make status``)."""
    run_dir = Layout(settings.data_dir).run_dir
    return {p.stem: int(p.read_text().strip()) for p in sorted(run_dir.glob("speed-*.pid"))}


def speed_health(settings: Settings) -> list[dict[str, Any]]:
    reports = []
    for instance in range(settings.speed_processes):
        port = settings.speed_metrics_port + instance
        reports.append(httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json())
    return reports


def dead_letters(settings: Settings) -> int:
    """Records in the DLQ topic (its end offsets summed)."""
    consumer = KafkaConsumer(**settings.kafka_client_config)
    try:
        parts = consumer.partitions_for_topic(settings.dlq_topic) or set()
        ends = consumer.end_offsets([TopicPartition(settings.dlq_topic, p) for p in parts])
        return sum(ends.values())
    finally:
        consumer.close()


def batch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lambda-batch"), *args], capture_output=True, text=True, timeout=1800
    )


def versions() -> list[dict[str, Any]]:
    return [json.loads(line) for line in batch("list", "--json").stdout.splitlines()]


def expect_exact(run: Run, base: tuple[int, int], what: str, seconds: float = 120) -> bool:
    want = (base[0] + run.count, base[1] + run.cents)
    took = wait(lambda: totals() == want, seconds)
    got = totals()
    return run.check(took is not None, f"{what}: API {got} = before + sent {want}")


def no_restart(run: Run, pids: dict[str, int], what: str) -> None:
    now = speed_pids(run.settings)
    run.check(now == pids, f"{what}: no speed process restarted ({pids} → {now})")
    reports = speed_health(run.settings)
    statuses = [r.get("status") for r in reports]
    run.check(all(s == "ok" for s in statuses), f"{what}: every /readyz ok ({statuses})")


def poison_stream(run: Run, base: tuple[int, int]) -> None:
    print("1. poison values and a 3 MB gzip key between valid events", flush=True)
    settings = run.settings
    pids, dlq_before = speed_pids(settings), dead_letters(settings)
    plain = KafkaProducer(**settings.kafka_client_config, acks="all")
    gzip = gzip_producer(settings.bootstrap_servers)
    _, template = event(run, 10**6, 100)
    poison = [
        (b"p1", template.replace(b'"Amount": 1.00', b'"Amount": "\xff"')),
        (b"p2", template[:-1] + b', "note": "\xff"}'),
        (b"p3", template[:-1] + b', "\xc0\xaf": 1}'),
    ]
    n = 0
    for block in range(5):
        for _ in range(100):
            key, value = event(run, n, 100 + n % 997)
            plain.send(settings.topic, value, key).get(30)
            run.acked(100 + n % 997)
            n += 1
        if block < 3:
            plain.send(settings.topic, poison[block][1], poison[block][0]).get(30)
        elif block == 3:
            gzip.send(settings.topic, b"not json", BIG_KEY).get(30)
    plain.close()
    gzip.close()
    expect_exact(run, base, "500 valid events counted once")
    got = wait(lambda: dead_letters(settings) - dlq_before >= 4, 60)
    new = dead_letters(settings) - dlq_before
    run.check(got is not None and new == 4, f"exactly 4 new dead letters ({new})")
    no_restart(run, pids, "after the poison stream")


def held_transaction(run: Run, base: tuple[int, int]) -> None:
    print("2. a transaction held open 150 s past its bucket's end, then committed", flush=True)
    settings = run.settings
    pids = speed_pids(settings)
    producer = KafkaProducer(
        **settings.kafka_client_config,
        transactional_id=f"held-{run.tag}",
        transaction_timeout_ms=600_000,  # the client's 60 s default would abort it
    )
    producer.init_transactions()
    producer.begin_transaction()
    key, value = event(run, 2 * 10**6, 4242)
    sent = producer.send(settings.topic, value, key).get(30)
    bucket_end = (sent.timestamp // settings.bucket_ms + 1) * settings.bucket_ms
    hold_s = max(0.0, bucket_end / 1000 - time.time()) + 150
    print(f"   held in partition {sent.partition} for {hold_s:.0f}s", flush=True)
    time.sleep(hold_s)
    producer.commit_transaction()
    producer.close()
    committed_at = time.monotonic()
    run.acked(4242)
    want = (base[0] + run.count, base[1] + run.cents)
    took = wait(lambda: totals() == want, 90, 0.5)
    run.check(took is not None, f"the held event counted by the speed view {took}s after commit")
    # The run that absorbs it: once its bucket is sealed (the commit released the seal).
    sealed = wait(lambda: landing_watermark() >= bucket_end, 180)
    run.check(sealed is not None, f"its bucket sealed {sealed}s after the commit")
    ran = batch("run")
    print(f"   lambda-batch run: exit {ran.returncode} {ran.stdout.strip()[-300:]}", flush=True)
    run.check(ran.returncode == 0, "lambda-batch run after the commit succeeded")
    horizon = wait(lambda: answer_horizon() >= bucket_end, 60)
    run.check(horizon is not None, "the API answers from a version whose horizon is past it")
    expect_exact(run, base, "still counted once after the batch run")
    idle_s = 200 - (time.monotonic() - committed_at)
    print(f"   idle behind the commit marker for {max(0.0, idle_s):.0f}s more", flush=True)
    time.sleep(max(0.0, idle_s))
    no_restart(run, pids, "200 s idle behind the commit marker")


class Flow(threading.Thread):
    """Valid events at about ``rate`` a second until stopped, each counted once acked; each
    flow of a run numbers its events apart (a TransactionID sent again is a duplicate)."""

    flows = 0

    def __init__(self, run: Run, rate: float = 20) -> None:
        super().__init__(daemon=True)
        self.run_ = run
        self.rate = rate
        self.stop = threading.Event()
        Flow.flows += 1
        self.first = (2 + Flow.flows) * 10**6

    def run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.run_.settings.bootstrap_servers, acks="all", linger_ms=5
        )
        n = self.first
        while not self.stop.wait(1 / self.rate):
            cents = 1 + n % 50_000
            key, value = event(self.run_, n, cents)
            producer.send(self.run_.settings.topic, value, key).get(30)
            self.run_.acked(cents)
            n += 1
        producer.close()


def runs_and_rollbacks(run: Run, base: tuple[int, int]) -> None:
    print("3. a batch run and two rebuilds while events flow; rollbacks; resume", flush=True)
    settings = run.settings
    flow = Flow(run)
    flow.start()
    ran = batch("run")
    run.check(ran.returncode == 0, f"lambda-batch run while events flow (exit {ran.returncode})")
    client = AirflowClient(f"http://{API_HOST}:{AIRFLOW_PORT}", admin_password(settings))
    for n in (1, 2):
        run_id = client.trigger("lambda_rebuild")
        done = wait(
            lambda r=run_id: client.run_state("lambda_rebuild", r) in ("success", "failed"), 1200, 5
        )
        state = client.run_state("lambda_rebuild", run_id)
        run.check(state == "success", f"lambda_rebuild run {n} {run_id}: {state} after {done}s")
    flow.stop.set()
    flow.join(60)
    expect_exact(run, base, f"{run.count} events in all, after the flow stopped")
    listed = versions()
    print("   versions: " + ", ".join(
        f"{v['version']}{'*' if v['current'] else ''}({'ok' if v['validated'] else 'no'})"
        for v in listed), flush=True)  # fmt: skip
    for row in [v for v in listed if v["validated"] and not v["current"]]:
        before = current_version()
        out = batch("rollback", "--to", row["version"])
        text = " ".join((out.stdout + out.stderr).split())
        if out.returncode != 0:
            clear = "rollback refused" in text and "CURRENT is unchanged" in text
            run.check(
                clear and current_version() == before,
                f"rollback to {row['version']} refused: {text[:200]}",
            )
            run.check(
                row["rollback"] is False,
                f"  listed as beyond reach: {row['rollback_refused_because']}",
            )
        else:
            on = wait(lambda v=row["version"]: current_version() == v, 60)
            run.check(on is not None, f"rollback to {row['version']}: the API serves it")
            expect_exact(run, base, f"  exact on {row['version']}", 60)
            run.check(row["rollback"] is True, "  listed as reachable")
    resumed = batch("resume")
    run.check(resumed.returncode == 0, "lambda-batch resume")
    flow = Flow(run)
    flow.start()
    time.sleep(settings.bucket_ms / 1000 + 30)  # a new bucket seals behind the events
    flow.stop.set()
    flow.join(60)
    ran = batch("run")
    run.check(ran.returncode == 0, f"lambda-batch run after resume (exit {ran.returncode})")
    expect_exact(run, base, "exact after resume and a run")


def main() -> None:
    settings = get_settings()
    run = Run(settings)
    print(f"tag {run.tag}; bucket {settings.bucket_ms} ms; keep {settings.batch_keep_versions}")
    base = totals()
    while True:  # DEMO=0: nothing else produces; wait until what was sent before is counted
        time.sleep(5)
        now = totals()
        if now == base:
            break
        base = now
    print(f"the API counts {base} before", flush=True)
    parts = (poison_stream, held_transaction, runs_and_rollbacks)
    chosen = sys.argv[1:] or [p.__name__ for p in parts]  # e.g. held_transaction alone
    for part in (p for p in parts if p.__name__ in chosen):
        try:
            part(run, base)
        except Exception as exc:  # a part that broke is a failure, the next part still runs
            run.check(False, f"{part.__name__} raised {type(exc).__name__}: {exc}")
    print(f"{len(run.passed)} passed, {len(run.failed)} failed")
    sys.exit(1 if run.failed else 0)


if __name__ == "__main__":
    main()
