"""``make chaos``: the whole local platform under a seeded fault schedule, then a reckoning.

    .venv/bin/python -m bench.chaos [--seconds 300] [--rate 1000] [--seed 7]

Starts the platform (``lambda-platform up``: Kafka, two speed processes, Airflow, serving) on a
fresh data directory, its landing directory on a small tmpfs when run as root, and produces
the adversarial stream (duplicates, conflicting copies, late and malformed records) at
``--rate`` events/s. Meanwhile a seeded schedule injects every fault once, one at a time, at a
random moment of its slot: SIGKILL of the broker, a speed process, the serving process,
``spark-submit`` mid-write and the Airflow scheduler; SIGSTOP of a speed process past its
session; the landing disk full for 10 s; poison records of every kind; and a view declared and
``lambda-platform deploy``-ed, then the Airflow scheduler SIGKILLed while the batch run that
builds it is in spark-submit. Each killed part is brought back with ``lambda-platform up``.
Two declared views are computed from the start. A poller reads ``/v1/totals`` all along.

Then: the producer stops, the API must converge to the ground truth (the topic read back and
refereed by the independent oracle), a last ``lambda_batch`` run must succeed and its views
equal the oracle's, every declared view must serve and answer as the plain reference
(``tests/support/declared.py``) does, every valid offset must be landed once with its exact
content, the DLQ
must hold exactly the invalid records with reasons, and no 5xx may appear outside the windows
in which the serving process was down. Prints a table, writes ``bench/results/chaos.json``
and exits non-zero unless every check holds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.chaos_check import (
    ALL_TIME,
    GroundTruth,
    api_differences,
    check_dlq,
    check_landing,
    convergence_s,
    declared_view_differences,
    read_log,
    reckoning_checks,
    stream_figures,
)
from bench.chaos_faults import FAULTS, Platform
from bench.common import exit_on_sigterm, write_report
from infra.airflow_env import AIRFLOW_PORT, API_HOST, admin_password
from infra.keeper import read_record
from infra.trigger_batch import AirflowClient
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from tests.support.oracle import oracle_views
from tests.support.pipeline import BIN, batch_views, env_for, mixed_stream, read_truth

console = Console()
BUCKET_MS = 30_000
TMPFS_SIZE = "256m"


@dataclass
class Injected:
    fault: str
    at_s: float  # since the stream started
    took_s: float
    note: str


@dataclass
class Poller:
    """Reads ``/v1/totals`` every 200 ms; keeps (time, status) with 0 for no connection."""

    api: str
    seen: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.api, timeout=5) as http:
            while not self.stop.is_set():
                try:
                    code = http.get("/v1/totals", params=ALL_TIME).status_code
                except httpx.HTTPError:
                    code = 0
                self.seen.append((time.monotonic(), code))
                self.stop.wait(0.2)

    def server_errors(self, down: list[tuple[float, float]]) -> tuple[int, int]:
        """5xx answers in all, and outside the windows in which serving was down."""
        errors = [t for t, code in self.seen if code >= 500]
        outside = [t for t in errors if not any(a <= t <= b for a, b in down)]
        return len(errors), len(outside)


@contextmanager
def landing_tmpfs(layout: Layout) -> Iterator[Path | None]:
    """Mount a small tmpfs on the landing directory (root only) so a fault can fill it."""
    target = layout.landing_dir
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield None
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(target)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        console.print(f"[yellow]no tmpfs ({mounted.stderr.decode().strip()})[/yellow]")
        yield None
        return
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def platform_cmd(env: dict[str, str], *args: str, timeout: float = 900) -> None:
    done = subprocess.run(
        [str(BIN / "lambda-platform"), *args], env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"lambda-platform {' '.join(args)}: {done.stdout}\n{done.stderr}")


def airflow(settings: Settings) -> AirflowClient:
    return AirflowClient(f"http://{API_HOST}:{AIRFLOW_PORT}", admin_password(settings))


def wait(predicate, timeout: float, what: str, interval: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``predicate()`` held; raise with ``what`` on time-out."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def final_batch(
    client: AirflowClient, layout: Layout, settings: Settings, newest_ts: int, timeout: float = 1200
) -> str:
    """Wait until the landing zone seals the last record, then run ``lambda_batch`` to success
    and return the version it published."""
    sealed = newest_ts - newest_ts % settings.bucket_ms + settings.bucket_ms
    wait(
        lambda: layout.landing_watermark(settings.partitions, settings.bucket_ms) >= sealed,
        300,
        "the landing watermark to pass the last record",
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_id = client.trigger("lambda_batch")
        state = "queued"
        while state not in ("success", "failed") and time.monotonic() < deadline:
            time.sleep(5)
            state = client.run_state("lambda_batch", run_id)
        current = layout.read_current()
        if state == "success" and current and current.horizon_ms >= sealed:
            return current.version
    raise TimeoutError("no lambda_batch run published the whole stream")


# Declared at start-up: computed through every fault (the deploy fault adds another).
FIRST_VIEWS = """
[[views]]
name = "received_hourly"
dimensions = ["TargetAccountID"]
window = "hour"
measures = ["count", "sum", "min", "distinct(SourceAccountID)"]

[[views]]
name = "large_daily"
dimensions = []
window = "day"
measures = ["count", "sum", "max"]
amount_min = "500.00"
"""
# Faults that take serving down or restart it on purpose: their polls may fail.
SERVING_RESTARTS = ("kill serving", "deploy a view, kill the scheduler mid-build")


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    rng = Random(args.seed)
    views_file = data_dir.parent / "views.toml"  # declared from the start; the deploy adds one
    views_file.write_text(FIRST_VIEWS)
    settings = Settings(
        data_dir=data_dir,
        views_file=views_file,
        bucket_ms=BUCKET_MS,
        speed_processes=2,
        batch_schedule_minutes=1,
        idle_seal_grace_ms=1000,
        # The stream saturates both cores; at the default nice the batch side yields to it
        # almost entirely, and the fault schedule needs a spark-submit to kill within 300 s.
        batch_nice=0,
    )
    env = env_for(settings, DEMO="0")
    layout = Layout.of(settings)
    api = f"http://{settings.api_host}:{settings.api_port}"
    injected: list[Injected] = []
    down: list[tuple[float, float]] = []
    with landing_tmpfs(layout) as tmpfs:
        try:
            console.print(f"starting the platform on {data_dir} (tmpfs landing: {bool(tmpfs)})")
            platform_cmd(env, "up", "--no-demo")
            client = airflow(settings)

            def trigger_batch() -> None:
                client.trigger("lambda_batch")

            trigger_batch()  # unpauses the DAG; it then runs every minute
            poller = Poller(api)
            threading.Thread(target=poller.run, daemon=True).start()
            truth_file = data_dir / "acked.jsonl"
            producer = subprocess.Popen(
                [
                    str(BIN / "lambda-produce"), "--quiet", "--truth", str(truth_file),
                    "--seed", str(args.seed), *mixed_stream(args.rate, args.accounts),
                ],
                env=env,
            )  # fmt: skip
            started = time.monotonic()
            target = Platform(settings, env, rng, trigger_batch, tmpfs)
            names = list(FAULTS)
            rng.shuffle(names)
            slot = args.seconds / len(names)
            for i, name in enumerate(names):
                at = started + i * slot + rng.uniform(0, slot / 2)
                time.sleep(max(0.0, at - time.monotonic()))
                began = time.monotonic()
                console.print(f"[bold]{began - started:6.1f}s[/bold] {name}")
                try:
                    note = FAULTS[name](target)
                except Exception as exc:  # reported as a failed check; the run goes on
                    note = f"error: {type(exc).__name__}: {exc}"
                    with suppress(Exception):
                        target.up()
                took = time.monotonic() - began
                if name in SERVING_RESTARTS:
                    down.append((began, time.monotonic()))
                injected.append(Injected(name, round(began - started, 1), round(took, 1), note))
                console.print(f"        {note} ({took:.1f}s)")
            time.sleep(max(0.0, started + args.seconds - time.monotonic()))
            producer.send_signal(signal.SIGTERM)
            producer.wait(300)
            stream_s = time.monotonic() - started
            stopped = time.monotonic()
            platform_cmd(env, "up", "--no-demo")  # in case a keeper restart is still pending

            log = read_log(settings, settings.topic)
            truth = GroundTruth.of(log, settings.dedup_horizon_ms)
            want = truth.summary()["count"]
            converge_s = convergence_s(api, want, stopped, 300)
            diffs_speed = api_differences(api, truth)

            version = final_batch(
                airflow(settings), layout, settings, max(r.timestamp for r in log)
            )
            current = layout.read_current()
            assert current is not None
            below = [r for r in truth.valid.values() if r["kafka_ts"] < current.horizon_ms]
            batch_equal = batch_views(layout, version) == oracle_views(
                below, settings.dedup_horizon_ms
            )
            diffs_batch = api_differences(api, truth)
            diffs_declared = declared_view_differences(
                api, views_file, truth, settings.dedup_horizon_ms
            )
            final = httpx.get(f"{api}/v1/totals", params=ALL_TIME, timeout=10).json()
            poller.stop.set()
            landing = check_landing(layout, truth)
            dlq = check_dlq(read_log(settings, settings.dlq_topic), truth, settings.topic)
            acked = read_truth(truth_file)
            errors, errors_outside = poller.server_errors(down)
            restarts = {
                name: read_record(target.supervisor, name).restarts
                for name in ("kafka", "speed-0", "speed-1", "serving", "airflow-scheduler")
            }
        finally:
            with suppress(Exception):
                platform_cmd(env, "down", timeout=300)
    api_total = int(final["count"])
    figures = {
        "seconds": args.seconds,
        "rate": args.rate,
        "seed": args.seed,
        "stream_s": round(stream_s, 1),
        "faults": [asdict(f) for f in injected],
        **stream_figures(log, acked, truth, api_total),
        "api_differences_before_batch": diffs_speed[:10],
        "api_differences_after_batch": diffs_batch[:10],
        "declared_view_differences": diffs_declared[:10],
        "batch_version": version,
        "batch_horizon_ms": current.horizon_ms,
        "batch_views_equal_oracle": batch_equal,
        "events_from_batch": final["meta"].get("events_from_batch"),
        "landing": asdict(landing),
        "dlq": asdict(dlq),
        "http_polls": len(poller.seen),
        "http_5xx": errors,
        "http_5xx_outside_serving_down": errors_outside,
        "converge_s": converge_s,
        "keeper_restarts": restarts,  # restarts the keeper made before `up` did
    }
    return figures


def failures(f: dict[str, Any]) -> list[str]:
    """Every check of the run that did not hold."""
    checks = {
        **reckoning_checks(f),
        "5xx outside the serving-down windows": f["http_5xx_outside_serving_down"] == 0,
        "a fault could not be injected": not any(
            x["note"].startswith("error:") for x in f["faults"]
        ),
    }
    return [name for name, ok in checks.items() if not ok]


def print_table(f: dict[str, Any]) -> None:
    faults = Table("t (s)", "fault", "took (s)", "what happened", title="faults injected")
    for x in f["faults"]:
        faults.add_row(str(x["at_s"]), x["fault"], str(x["took_s"]), x["note"])
    console.print(faults)
    summary = Table("figure", "value", title="fault run")
    rows = [
        ("events produced (records in the log)", f["produced"]),
        ("  valid / invalid", f"{f['valid']} / {f['invalid']}"),
        ("acknowledged, missing from the log", f["acked_missing_from_log"]),
        ("landed (distinct offsets)", f["landing"]["landed"]),
        ("counted (API, after dedup) / expected", f"{f['api_events']} / {f['expected_events']}"),
        ("lost", f["lost"]),
        ("double", f["double"]),
        ("DLQ records (copies incl.) / invalid", f"{f['dlq']['records']} / {f['invalid']}"),
        ("5xx / outside serving-down windows",
         f"{f['http_5xx']} / {f['http_5xx_outside_serving_down']}"),
        ("time to converge after the stream (s)", f["converge_s"]),
        ("restarts by the keeper (not by up)",
         ", ".join(f"{k} {v}" for k, v in f["keeper_restarts"].items() if v) or "none"),
        ("last batch version equals the oracle", f["batch_views_equal_oracle"]),
    ]  # fmt: skip
    for name, value in rows:
        summary.add_row(name, str(value))
    console.print(summary)


def print_log_tails(logs: Path, lines: int = 25) -> None:
    """The last lines of every service's log, for a run that ended in an exception."""
    for log in sorted(logs.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- {log.name} (last {len(tail)} lines)", *tail, sep="\n", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=300, help="length of the stream")
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--report", default="chaos", help="name of the report under results/")
    args = parser.parse_args()
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="lambda-chaos-") as tmp:
        try:
            figures = run(args, Path(tmp) / "data")
        except BaseException:
            print_log_tails(Path(tmp) / "data" / "logs")  # the data directory goes with tmp
            raise
    conclude(args.report, figures, failures(figures), print_table, "fault run")


def conclude(
    report: str,
    figures: dict[str, Any],
    failed: list[str],
    show: Callable[[dict[str, Any]], None],
    what: str,
) -> None:
    """Record the failed checks in the report, write it, show the figures, and exit 1 unless
    every check held (both fault runs end this way)."""
    figures["failed_checks"] = failed
    write_report(report, figures)
    show(figures)
    if failed:
        console.print(f"[red]{what} failed: {'; '.join(failed)}[/red]")
        sys.exit(1)
    console.print(f"[green]{what} passed: lost 0, double 0, every check held[/green]")


if __name__ == "__main__":
    main()
