"""Drive the platform through its public commands and read back what it stored.

Ground truth comes from the producer's ``--truth`` file (what the broker acknowledged, with
partition and offset); expected views come from the one reference implementation.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import Engine, select

from infra.services import speed_health
from lambda_contracts.batch_files import view_dataset
from lambda_contracts.events import MAX_CREATED_TIME_MS, Transaction, parse_event
from lambda_contracts.landing_files import landing_row, read_landing_file
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import partition_state
from lambda_contracts.views import VIEWS, Key, Measures, keyed
from serving.row_query import RowQuery
from serving.speed_store import SpeedReader
from speed_layer.main import STARTED_EVENT
from tests.support.oracle import DEFAULT_DEDUP_HORIZON_MS, oracle_views

BIN = Path(sys.executable).parent


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a platform command use these settings."""
    # Airflow settings inherited from this process (tests/dags points them at a throw-away
    # home) must not leak into a command that derives its own from the settings.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env = {**inherited, **settings.as_env(), **extra}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return env


def run_cli(
    settings: Settings, command: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """One of the platform's commands (``lambda-speed``, ``lambda-platform``, …) with these
    settings, as an operator runs it; its output captured."""
    return subprocess.run(
        [str(BIN / command), *args],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def airflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``airflow ARGS`` with the platform's Airflow configuration for these settings."""
    return run_cli(settings, "lambda-platform", "airflow", *args, timeout=600)


@dataclass(frozen=True)
class TruthRecord:
    kind: str
    partition: int
    offset: int
    timestamp: int
    value: bytes

    @property
    def event(self) -> Transaction | None:
        parsed = parse_event(self.value)
        return parsed if isinstance(parsed, Transaction) else None


def produce(
    settings: Settings,
    truth_file: Path,
    *args: str,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> list[TruthRecord]:
    """Run ``lambda-produce`` with these arguments (``env``: more variables); return what the
    broker acknowledged."""
    cmd = [str(BIN / "lambda-produce"), "--quiet", "--truth", str(truth_file), *args]
    subprocess.run(cmd, env=env_for(settings, **(env or {})), check=True, timeout=timeout)
    return read_truth(truth_file)


def read_truth(path: Path) -> list[TruthRecord]:
    out = []
    with path.open() as fh:
        for line in fh:
            raw = json.loads(line)
            out.append(
                TruthRecord(
                    raw["kind"],
                    raw["partition"],
                    raw["offset"],
                    raw["timestamp"],
                    base64.b64decode(raw["value_b64"]),
                )
            )
    return out


def truth_rows(truth: Iterable[TruthRecord]) -> list[dict[str, Any]]:
    """Valid events as landing rows, in log order (partition, offset)."""
    rows = []
    for rec in sorted(truth, key=lambda r: (r.partition, r.offset)):
        event = rec.event
        if event is not None:
            rows.append(landing_row(event, rec.partition, rec.offset, rec.timestamp))
    return rows


def expected_views(
    truth: Iterable[TruthRecord], dedup_horizon_ms: int = DEFAULT_DEDUP_HORIZON_MS
) -> dict[str, dict[Key, Measures]]:
    """What the views must hold for these acknowledged records: the independent oracle."""
    return oracle_views(truth_rows(truth), dedup_horizon_ms)


def speed_views(engine: Engine, min_bucket: int = 0) -> dict[str, dict[Key, Measures]]:
    """Speed rows with ingest bucket >= min_bucket, rolled up over buckets, per view."""
    reader = SpeedReader(engine, topic="")
    everything = (0, MAX_CREATED_TIME_MS + 1)
    return {
        view.name: dict(reader.rows(RowQuery.of(view, *everything, view.key_columns), min_bucket))
        for view in VIEWS
    }


def stored_offsets(engine: Engine, topic: str) -> dict[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(partition_state.c.kafka_partition, partition_state.c.next_offset).where(
                partition_state.c.topic == topic
            )
        )
        return dict(rows.all())


def end_offsets(settings: Settings) -> dict[int, int]:
    consumer = KafkaConsumer(**settings.kafka_client_config)
    try:
        tps = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.25) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate``; on time-out fail with what was awaited and the speed processes'
    last log lines, so a failed wait shows its cause rather than only its symptom."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}{SpeedProcess.recent_logs()}"
            )
        time.sleep(interval)


def wait_caught_up(settings: Settings, engine: Engine, timeout: float = 120) -> None:
    """Until the store's offsets reach the topic's end offsets on every partition."""
    ends = end_offsets(settings)

    def caught_up() -> bool:
        stored = stored_offsets(engine, settings.topic)
        return all(stored.get(p, 0) >= end for p, end in ends.items() if end > 0)

    wait_until(caught_up, timeout, f"the speed layer to catch up to {ends}")


def landed_rows(layout: Layout) -> list[dict[str, Any]]:
    """Every row of every landing file (duplicates across files included)."""
    rows: list[dict[str, Any]] = []
    for key in layout.landing_files():
        rows.extend(read_landing_file(layout, key).to_pylist())
    return rows


def read_topic(settings: Settings, topic: str, timeout_ms: int = 5000) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        **settings.kafka_client_config,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=timeout_ms,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


class SpeedProcess:
    """One ``lambda-speed`` process, started with the test's settings.

    Every process started is registered before it runs, so the fixtures can stop it whether
    the test (or a fixture's set-up) succeeded or not; use it as a context manager where a
    process must not outlive a block.
    """

    _started: ClassVar[list[SpeedProcess]] = []
    LOG_TAIL_LINES: ClassVar[int] = 40

    @classmethod
    def started_count(cls) -> int:
        return len(cls._started)

    @classmethod
    def kill_started_after(cls, index: int) -> None:
        """Kill processes started since ``started_count()`` returned ``index``."""
        for speed in cls._started[index:]:
            speed.kill()
        del cls._started[index:]

    @classmethod
    def recent_logs(cls) -> str:
        """The last log lines of every registered process, for a failure message."""
        parts = []
        for speed in cls._started:
            try:
                lines = speed.log_path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                lines = []
            state = "running" if speed.alive() else f"exited {speed.returncode()}"
            tail = "\n    ".join(lines[-cls.LOG_TAIL_LINES :])
            parts.append(f"\n--- {speed.log_path} ({state}), last lines:\n    {tail}")
        return "".join(parts)

    def __init__(
        self,
        settings: Settings,
        instance: int = 0,
        log_dir: Path | None = None,
        metrics: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.env = env or {}  # more variables, e.g. secrets (``as_env`` leaves them out)
        self.instance = instance
        self.log_path = (log_dir or settings.data_dir) / f"speed-{instance}.log"
        self.metrics = metrics
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> SpeedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The log is appended to by each process of this instance: this one's starts here.
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._started.append(self)
        with self.log_path.open("ab") as log:
            flag = "--metrics" if self.metrics else "--no-metrics"
            self.proc = subprocess.Popen(
                [str(BIN / "lambda-speed"), "--instance", str(self.instance), flag],
                env=env_for(self.settings, **self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def __enter__(self) -> SpeedProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            try:
                self.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM once the process handles it (a signal that lands while the interpreter is
        still starting ends it with -15 before any code of ours runs), then its exit code."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.alive() and not self._started_log() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def started(self) -> bool:
        """Whether this process has logged that it started (its loop is about to run)."""
        return self._started_log()

    def _started_log(self) -> bool:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return STARTED_EVENT.encode() in log.read()
        except FileNotFoundError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def health(self) -> dict[str, Any] | None:
        """The process's ``/readyz`` report (needs ``metrics=True``), or None if unreachable."""
        return speed_health(self.settings, self.instance)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_landing_holds_every_valid_event_once(
    settings: Settings, truth: Iterable[TruthRecord]
) -> None:
    """Every acknowledged valid event is landed with its exact content, and nothing else.

    A crash may leave overlapping files (readers deduplicate by partition and offset), but
    every copy of an offset must be the same row.
    """
    copies: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in landed_rows(Layout.of(settings)):
        copies.setdefault((row["kafka_partition"], row["kafka_offset"]), []).append(row)
    expected = {(r["kafka_partition"], r["kafka_offset"]): r for r in truth_rows(truth)}
    assert copies.keys() == expected.keys()
    assert all(all(c == expected[k] for c in rows) for k, rows in copies.items())


def start_producer(settings: Settings, truth_file: Path, *args: str) -> subprocess.Popen[bytes]:
    """``lambda-produce`` in the background, writing what the broker acknowledged."""
    cmd = [str(BIN / "lambda-produce"), "--quiet", "--truth", str(truth_file), *args]
    return subprocess.Popen(cmd, env=env_for(settings))


def batch_views(layout: Layout, version: str) -> dict[str, dict[Key, Measures]]:
    """The batch views of a version, as {view: {key: measures}}."""
    import duckdb

    out: dict[str, dict[Key, Measures]] = {}
    con = duckdb.connect()
    for view in VIEWS:
        cols = ", ".join([*view.key_columns, *view.measure_names])
        n = len(view.key_columns)
        con.register("version_view", view_dataset(layout, version, view))
        rows = con.execute(f"SELECT {cols} FROM version_view").fetchall()
        con.unregister("version_view")
        out[view.name] = dict(keyed(rows, n))
    con.close()
    return out


def merge_views(*parts: dict[str, dict[Key, Measures]]) -> dict[str, dict[Key, Measures]]:
    """Combine partial views key by key with each view's own monoid."""
    out: dict[str, dict[Key, Measures]] = {}
    for view in VIEWS:
        merged: dict[Key, Measures] = {}
        for part in parts:
            for key, value in part.get(view.name, {}).items():
                merged[key] = view.combine(merged[key], value) if key in merged else value
        out[view.name] = merged
    return out


def mixed_stream(rate: int, accounts: int, late_max_hours: int = 72) -> list[str]:
    """Producer arguments for a stream with every kind of trouble: exact and conflicting
    duplicates, late events and malformed records."""
    return [
        "--rate", str(rate), "--accounts", str(accounts), "--duplicates", "0.05",
        "--conflicts", "0.03", "--late", "0.05", "--late-max-hours", str(late_max_hours),
        "--malformed", "0.03",
    ]  # fmt: skip


def wait_sealed(settings: Settings, truth: Iterable[TruthRecord], timeout: float = 90) -> int:
    """Until the landing watermark passes the bucket of the newest record; returns it."""
    newest = max(r.timestamp for r in truth)
    return wait_watermark(
        settings, newest - newest % settings.bucket_ms + settings.bucket_ms, timeout
    )


def wait_watermark(settings: Settings, at_least: int, timeout: float = 90) -> int:
    layout = Layout.of(settings)

    def current() -> int:
        return layout.landing_watermark(settings.partitions, settings.bucket_ms)

    wait_until(lambda: current() >= at_least, timeout, f"the landing watermark to reach {at_least}")
    return current()


def kill_recompute_mid_write(settings: Settings, horizon_ms: int, version: str) -> None:
    """Run the Spark job (spark-submit) and SIGKILL its whole process group once it has
    written a file of its version (or ended): what a crash of the batch host does."""
    from batch_layer.submit import spark_submit_command, submit_env

    layout = Layout.of(settings)
    job = subprocess.Popen(
        spark_submit_command(settings, horizon_ms, version, "killed"),
        env=submit_env(settings),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def writing() -> bool:
        found = layout.store.list(layout.version_prefix(version))
        return any(o.key.endswith(".parquet") for o in found) or job.poll() is not None

    wait_until(writing, 240, f"the job to start writing version {version}")
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()


# A key far over the broker's request size that gzip shrinks to almost nothing: the broker
# accepts the record, and a dead letter that copies it whole cannot be sent.
BIG_KEY = b"k" * 3_000_000


def gzip_producer(bootstrap_servers: str) -> KafkaProducer:
    """A plain producer (acks=all) whose gzip batches may carry :data:`BIG_KEY`."""
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        compression_type="gzip",
        max_request_size=10_000_000,
    )


def open_transaction(
    settings: Settings, tid: str, account: str, amount: str
) -> tuple[KafkaProducer, int]:
    """A transactional producer with one event sent to partition 0 (acknowledged) in a
    transaction left open, and the event's broker timestamp: the caller commits or aborts."""
    producer = KafkaProducer(
        **settings.kafka_client_config,
        transactional_id=f"tx-{tid}-{settings.topic}",
    )
    producer.init_transactions()
    producer.begin_transaction()
    event = Transaction(
        TransactionID=tid,
        CreatedTime=int(time.time() * 1000),
        SourceAccountID=account,
        TargetAccountID="t",
        Amount=Decimal(amount),
    )
    sent = producer.send(settings.topic, event.to_json_bytes(), event.key, partition=0).get(30)
    return producer, sent.timestamp


def speed_metric(settings: Settings, name: str) -> float:
    """Sum of a metric's samples (all labels) on the speed process's metrics port."""
    text = httpx.get(f"http://127.0.0.1:{settings.speed_metrics_port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )
