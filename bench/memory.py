"""Memory of the whole local stack: steady state with the demo producer, and the peak of a
batch run.

    .venv/bin/python -m bench.memory [--steady-s 120] [--demo-rate 20]

Starts ``lambda-platform up`` (Kafka, speed, Airflow, serving, demo producer) on a fresh data
directory and samples every process that belongs to it — found by the data directory in its
environment, so Airflow's task processes and ``spark-submit`` count too — every second:
PSS (shared pages split between the processes that map them: the sum is what the stack
really holds) and RSS (the usual figure; its sum counts shared pages more than once). Then
triggers ``lambda_batch`` and samples until the run ends. Writes ``bench/results/memory.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.chaos import airflow, platform_cmd
from bench.common import write_report
from lambda_contracts.settings import Settings
from tests.support.pipeline import env_for

console = Console()
MIB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    at_s: float
    pss: dict[str, int]  # bytes per part of the stack
    rss: dict[str, int]

    @property
    def pss_total(self) -> int:
        return sum(self.pss.values())

    @property
    def rss_total(self) -> int:
        return sum(self.rss.values())


def part_of(cmdline: str) -> str:
    """Which part of the stack a process is, from its command line."""
    rules = [
        ("spark (batch job)", r"SparkSubmit|spark_job|pyspark"),
        ("kafka", r"kafka\.Kafka|kafka_2\.13"),
        ("speed", r"speed_layer"),
        ("serving", r"serving\.main|uvicorn"),
        ("producer", r"lambda-produce|producer\.cli"),
        ("keeper", r"infra\.platform keep"),
        ("airflow", r"airflow"),
    ]
    for name, pattern in rules:
        if re.search(pattern, cmdline):
            return name
    return "other"


def stack_processes(data_dir: Path) -> dict[int, str]:
    """{pid: command line} of live processes whose environment names this data directory."""
    marker = f"LAMBDA_DATA_DIR={data_dir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def memory_of(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of a process in bytes, 0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    values = dict(re.findall(r"^(Pss|Rss):\s+(\d+) kB", text, re.MULTILINE))
    return int(values.get("Pss", 0)) * 1024, int(values.get("Rss", 0)) * 1024


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def classify(pid: int, processes: dict[int, str]) -> str:
    """A process's part, or its nearest ancestor's (uvicorn's and Airflow's workers are
    ``multiprocessing`` children whose command line names no part)."""
    seen = 0
    current: int | None = pid
    while current in processes and seen < 16:
        part = part_of(processes[current])
        if part != "other":
            return part
        current, seen = parent_of(current), seen + 1
    return "other"


def sample(data_dir: Path, started: float) -> Sample:
    pss: dict[str, int] = defaultdict(int)
    rss: dict[str, int] = defaultdict(int)
    processes = stack_processes(data_dir)
    for pid in processes:
        p, r = memory_of(pid)
        part = classify(pid, processes)
        pss[part] += p
        rss[part] += r
    return Sample(round(time.monotonic() - started, 1), dict(pss), dict(rss))


def sample_until(data_dir: Path, done: threading.Event, started: float) -> list[Sample]:
    samples = []
    while not done.is_set():
        samples.append(sample(data_dir, started))
        done.wait(1.0)
    return samples


def mib(n: float) -> float:
    return round(n / MIB, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steady-s", type=int, default=120, help="seconds of steady state")
    parser.add_argument("--demo-rate", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lambda-memory-") as tmp:
        data_dir = Path(tmp) / "data"
        settings = Settings(data_dir=data_dir, bucket_ms=30_000)
        env = env_for(settings, DEMO="1")
        try:
            platform_cmd(env, "up", "--demo-rate", str(args.demo_rate))
            time.sleep(30)  # settle: Airflow parses its DAGs, the JVM warms up
            started = time.monotonic()
            steady = []
            while time.monotonic() - started < args.steady_s:
                steady.append(sample(data_dir, started))
                time.sleep(1.0)
            done = threading.Event()
            batch: list[Sample] = []
            sampler = threading.Thread(
                target=lambda: batch.extend(sample_until(data_dir, done, time.monotonic()))
            )
            sampler.start()
            client = airflow(settings)
            run_id = client.trigger("lambda_batch")
            state = "queued"
            deadline = time.monotonic() + 900
            while state not in ("success", "failed") and time.monotonic() < deadline:
                time.sleep(3)
                state = client.run_state("lambda_batch", run_id)
            done.set()
            sampler.join()
        finally:
            platform_cmd(env, "down", timeout=300)
    last = steady[-1]
    peak = max(batch, key=lambda s: s.pss_total)
    figures = {
        "demo_rate": args.demo_rate,
        "steady_s": args.steady_s,
        "batch_run": state,
        "steady_pss_mib": {"mean": mib(sum(s.pss_total for s in steady) / len(steady)),
                           "max": mib(max(s.pss_total for s in steady))},
        "steady_rss_sum_mib": {"mean": mib(sum(s.rss_total for s in steady) / len(steady)),
                               "max": mib(max(s.rss_total for s in steady))},
        "steady_by_part_pss_mib": {k: mib(v) for k, v in sorted(last.pss.items())},
        "batch_peak_pss_mib": mib(peak.pss_total),
        "batch_peak_rss_sum_mib": mib(max(s.rss_total for s in batch)),
        "batch_peak_by_part_pss_mib": {k: mib(v) for k, v in sorted(peak.pss.items())},
        "command": f"python -m bench.memory --steady-s {args.steady_s}",
    }  # fmt: skip
    write_report("memory", figures)
    table = Table("part", "steady PSS (MiB)", "batch peak PSS (MiB)", title="memory")
    for part in sorted(set(last.pss) | set(peak.pss)):
        table.add_row(part, str(mib(last.pss.get(part, 0))), str(mib(peak.pss.get(part, 0))))
    table.add_row("total", str(mib(last.pss_total)), str(mib(peak.pss_total)))
    console.print(table)


if __name__ == "__main__":
    main()
