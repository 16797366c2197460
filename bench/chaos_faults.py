"""The faults of the fault run, each done to the live local platform as it would happen.

Every fault returns a short note of what it hit. Killed parts are brought back the way an
operator would: ``lambda-platform up`` (the keeper may be faster; either is fine).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from random import Random

from kafka import KafkaProducer

from infra.supervisor import Supervisor
from lambda_contracts.events import ID_MAX_LENGTH, MAX_AMOUNT, MAX_CREATED_TIME_MS
from lambda_contracts.layout import VERSIONS_PREFIX, Layout
from lambda_contracts.settings import Settings
from tests.support.pipeline import BIN

SPARK_SUBMIT_CLASS = "org.apache.spark.deploy.SparkSubmit"
SESSION_TIMEOUT_S = 10  # kafka-python's default session.timeout.ms, which the speed layer keeps


@dataclass
class Platform:
    """What a fault needs to reach the running platform."""

    settings: Settings
    env: dict[str, str]
    rng: Random
    trigger_batch: Callable[[], None]
    tmpfs: Path | None  # the landing directory, when it is a tmpfs of our own

    @property
    def supervisor(self) -> Supervisor:
        assert self.settings.logs_dir is not None
        return Supervisor(Layout(self.settings.data_dir).run_dir, self.settings.logs_dir)

    def pid(self, service: str) -> int:
        pid = self.supervisor.pid(service)
        if pid is None:
            raise RuntimeError(f"{service} is not running")
        return pid

    def up(self) -> None:
        """What an operator does after a failure: ``make up`` (lambda-platform up)."""
        self.command("up", "--no-demo")

    def command(self, *args: str) -> None:
        """``lambda-platform ARGS`` as an operator runs it; raises if it fails."""
        done = subprocess.run(
            [str(BIN / "lambda-platform"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"lambda-platform {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
            )


def kill_service(name: str) -> Callable[[Platform], str]:
    def fault(p: Platform) -> str:
        pid = p.pid(name)
        os.killpg(pid, signal.SIGKILL)
        time.sleep(2)
        p.up()
        return f"SIGKILL {name} (pid {pid}), then lambda-platform up"

    fault.__name__ = f"kill_{name}"
    return fault


def stop_speed(p: Platform) -> str:
    """Freeze a speed process past its session: the group moves on, the zombie must not write."""
    pid = p.pid("speed-0")
    seconds = SESSION_TIMEOUT_S + 5
    os.killpg(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.killpg(pid, signal.SIGCONT)
    p.up()
    return f"SIGSTOP speed-0 (pid {pid}) for {seconds}s, then SIGCONT"


def spark_jvms(data_dir: Path) -> list[int]:
    """The JVMs running ``SparkSubmit`` for the platform on ``data_dir`` (not the launcher
    that builds their command line, and never another platform's or test's Spark job on the
    same machine: the job's environment names its data directory)."""
    found = subprocess.run(["pgrep", "-f", SPARK_SUBMIT_CLASS], capture_output=True, text=True)
    ours = f"LAMBDA_DATA_DIR={data_dir}".encode()
    jvms = []
    for pid in found.stdout.split():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        launcher = b"org.apache.spark.launcher.Main" in argv
        if argv[0].endswith(b"java") and not launcher and ours in environ:
            jvms.append(int(pid))
    return jvms


def new_spark_jvms(p: Platform, seen: set[int]) -> list[int]:
    """Wait (up to 300 s, triggering a run if none starts) for a spark-submit JVM not in
    ``seen``."""
    deadline = time.monotonic() + 300
    triggered = False
    while not (jvms := [pid for pid in spark_jvms(p.settings.data_dir) if pid not in seen]):
        if time.monotonic() > deadline:
            return []
        if not triggered and time.monotonic() > deadline - 240:
            p.trigger_batch()
            triggered = True
        time.sleep(0.2)
    return jvms


def kill_once_writing(p: Platform, jvms: list[int]) -> tuple[list[int], bool]:
    """SIGKILL ``jvms`` once their job starts writing a version, or after 60 s of reading;
    returns the JVMs killed (none when the job ended first) and whether it was writing."""
    versions = Path(Layout.of(p.settings).store.path(VERSIONS_PREFIX.rstrip("/")))
    started = time.time()

    def writing() -> bool:
        """An entry of a version created or changed since ``started``: a retried task writes
        the same version id again, so a new version directory alone would not show it."""
        for entry in versions.glob("*/*"):
            with suppress(FileNotFoundError):
                if entry.stat().st_mtime >= started:
                    return True
        return False

    seen_writing = False
    while time.time() - started < 60 and any(Path(f"/proc/{pid}").exists() for pid in jvms):
        if seen_writing := writing():
            break
        time.sleep(0.05)
    time.sleep(p.rng.uniform(0, 0.2))
    killed = []
    for pid in jvms:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed, seen_writing


def kill_spark_submit(p: Platform, attempts: int = 3) -> str:
    """SIGKILL the spark-submit JVM of a running recompute, once it writes its version.

    On a small stream the job writes for well under a second: a run that ends between two
    looks is not a fault injected, so the next run (the DAG runs every minute, and Airflow
    retries a killed task) is tried, up to ``attempts`` runs."""
    seen: set[int] = set()
    for attempt in range(1, attempts + 1):
        if not (jvms := new_spark_jvms(p, seen)):
            return "skipped: no spark-submit ran within 300 s"
        seen.update(jvms)
        killed, writing = kill_once_writing(p, jvms)
        if killed:
            when = "while writing its version" if writing else "before it wrote (still reading)"
            p.up()
            return (
                f"SIGKILL spark-submit JVM {killed} {when} (run {attempt});"
                " Airflow retries the task"
            )
    return f"missed: {attempts} spark-submit runs ended before the kill"


def fill_disk(p: Platform) -> str:
    """The landing directory's file system full for 10 s."""
    if p.tmpfs is None:
        return "skipped: the landing directory is not a tmpfs of ours (needs root to mount)"
    filler = p.tmpfs / ".chaos-filler"
    written = 0
    chunk = b"\0" * (1 << 20)
    try:
        with filler.open("wb") as fh:
            while True:
                fh.write(chunk)
                fh.flush()
                written += len(chunk)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    time.sleep(10)
    filler.unlink()
    p.up()
    return f"landing tmpfs full for 10 s ({written >> 20} MiB filler)"


def poison_values() -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every kind of invalid record the contract must send to the DLQ."""
    base = (
        '{{"TransactionID": {tid}, "CreatedTime": {ts}, "SourceAccountID": {src}, '
        '"TargetAccountID": "2", "Amount": {amount}}}'
    )

    def event(tid: str = '"p"', ts: str = "1795000000000", src: str = '"1"', amount: str = "1"):
        return base.format(tid=tid, ts=ts, src=src, amount=amount).encode()

    long_id = '"' + "x" * (ID_MAX_LENGTH + 1) + '"'
    return [
        (b"k", None),  # a tombstone
        (b"k", b""),  # empty value
        (None, b"\xff\xfe\x00 not utf-8"),
        (None, b"{ not json"),
        (None, b"[1, 2, 3]"),
        (None, b'"a string"'),
        (None, b"null"),
        (b"1", event(tid=long_id)),  # longer than the stores hold
        (b"1", event(tid='"nul\\u0000id"')),  # NUL breaks PostgreSQL text
        (b"1", event(src='"tab\\tsrc"')),  # a control character
        (b"1", event(tid='""')),
        (b"1", event(tid="123")),  # a number where a string belongs
        (b"1", event(amount=f"{MAX_AMOUNT}.01")),  # above the bound that keeps sums exact
        (b"1", event(amount="1e400")),
        (b"1", event(amount="NaN")),
        (b"1", event(amount="-0.01")),
        (b"1", event(amount="0.001")),
        (b"1", event(amount='"12.50"')),
        (b"1", event(ts=str(MAX_CREATED_TIME_MS + 1))),
        (b"1", event(ts="-1")),
        (b"1", event(ts='"yesterday"')),
        (b"1", b'{"TransactionID": "p", "Amount": 1}'),  # fields missing
        (b"1", b"{" + b'"pad": "' + b"y" * 1_000_000 + b'"}'),  # 1 MB: the DLQ truncates it
    ]


def poison(p: Platform) -> str:
    producer = KafkaProducer(
        **p.settings.kafka_client_config, acks="all", max_request_size=2_000_000
    )
    try:
        values = poison_values()
        for key, value in values:
            producer.send(p.settings.topic, key=key, value=value).get(timeout=60)
    finally:
        producer.close()
    return f"{len(values)} poison records, one of each kind"


# Appended to the views file by the deploy fault: a view built while the scheduler dies.
ADDED_VIEW = """
[[views]]
name = "pairs_hourly"
dimensions = ["SourceAccountID", "TargetAccountID"]
window = "hour"
measures = ["count", "sum", "max"]
"""


def deploy_then_kill_scheduler(p: Platform) -> str:
    """Declare one more view and ``lambda-platform deploy`` it (speed and serving restart on
    the file), then SIGKILL the Airflow scheduler while the first batch run after the deploy —
    the one that builds the new view — is in spark-submit; then ``lambda-platform up``. The
    reckoning checks the view answers exactly once it serves."""
    views_file = p.settings.views_file
    if "pairs_hourly" in views_file.read_text():
        return "skipped: pairs_hourly is deployed already"
    views_file.write_text(views_file.read_text() + ADDED_VIEW)
    seen = set(spark_jvms(p.settings.data_dir))  # a run already going does not build it
    p.command("deploy")
    seen |= set(spark_jvms(p.settings.data_dir))
    building = new_spark_jvms(p, seen)
    pid = p.pid("airflow-scheduler")
    os.killpg(pid, signal.SIGKILL)
    time.sleep(2)
    p.up()
    if not building:
        return f"missed: deployed pairs_hourly, no batch run in 300 s; SIGKILL scheduler {pid}"
    return (
        f"deployed pairs_hourly; SIGKILL airflow-scheduler (pid {pid}) while spark-submit "
        f"{building} builds it; then lambda-platform up"
    )


FAULTS: dict[str, Callable[[Platform], str]] = {
    "kill broker": kill_service("kafka"),
    "kill speed process": kill_service("speed-1"),
    "kill serving": kill_service("serving"),
    "kill spark-submit mid-write": kill_spark_submit,
    "kill Airflow scheduler": kill_service("airflow-scheduler"),
    "freeze speed process": stop_speed,
    "landing disk full": fill_disk,
    "poison records": poison,
    "deploy a view, kill the scheduler mid-build": deploy_then_kill_scheduler,
}
