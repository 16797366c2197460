"""Where the CPU of a steady local stack goes: each service's share of the cores, side by side.

    .venv/bin/python -m bench.stack_cpu [--stream 200] [--rate 500] [--seconds 40]

The whole local stack (as ``bench.serving_under_load`` starts it: DEMO=0, no scheduled batch)
on a temporary data directory, a ``--stream`` events/s stream and, with ``--rate``, vegeta on
random ``/v1/accounts/{id}/summary`` at that rate. After a 20 s warm-up the CPU time of every
process is read twice ``--seconds`` apart (``psutil``: user + system, children included by
walking each service's process tree) and summed per service. Two configurations run one after
the other on fresh stacks: ``before`` (the speed layer's fetches return at the first record,
``LAMBDA_SPEED_FETCH_MIN_BYTES=1``, ``..._MAX_WAIT_MS=50``: the behaviour until issue 33) and
``after`` (the defaults). On 2 cores every tenth of a core the stack spends at rest is taken
from a batch run and from the answers' tail latency (``bench/README.md``).

The figures go to ``bench/results/stack_cpu.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

from bench.common import write_report
from bench.serving_bench import vegeta
from bench.serving_under_load import ACCOUNTS, BASE, platform, produce, stack_env

CONFIGS: dict[str, dict[str, str]] = {
    "before": {"LAMBDA_SPEED_FETCH_MIN_BYTES": "1", "LAMBDA_SPEED_FETCH_MAX_WAIT_MS": "50"},
    "after": {},
}
SERVICES = (
    ("speed", "speed_layer.main"),
    ("serving", "serving.main"),
    ("kafka", "kafka.Kafka"),
    ("airflow", "airflow"),
    ("stream producer", "producer.cli"),
    ("vegeta", "vegeta"),
)


def service_of(process: psutil.Process) -> str | None:
    """The service a process belongs to: its own command line or an ancestor's."""
    try:
        chain = [process, *process.parents()]
        for p in chain:
            command = " ".join(p.cmdline())
            for name, marker in SERVICES:
                if marker in command:
                    return name
    except psutil.Error:
        return None
    return None


def cpu_times() -> dict[int, tuple[str, float]]:
    found = {}
    for process in psutil.process_iter():
        service = service_of(process)
        if service is None:
            continue
        try:
            t = process.cpu_times()
            found[process.pid] = (service, t.user + t.system)
        except psutil.Error:
            continue
    return found


def shares(seconds: float) -> dict[str, float]:
    """Cores each service used over the next ``seconds``."""
    before = cpu_times()
    time.sleep(seconds)
    after = cpu_times()
    used: dict[str, float] = defaultdict(float)
    for pid, (service, total) in after.items():
        used[service] += total - before.get(pid, (service, 0.0))[1]
    return {name: round(cpu / seconds, 3) for name, cpu in sorted(used.items())}


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lambda-stack-cpu-") as tmp:
        env = stack_env(Path(tmp) / "data") | CONFIGS[name]
        with platform(env):
            stream = produce(env, 0, args.stream, seed=1)
            attack = None
            try:
                if args.rate:
                    targets = Path(tmp) / "targets"
                    query = "summary?start=0&end=4000000000000"
                    targets.write_text(
                        "".join(
                            f"GET {BASE}/v1/accounts/{100_000 + i}/{query}\n\n"
                            for i in range(ACCOUNTS)
                        )
                    )
                    command = [vegeta(), "attack", f"-rate={args.rate}/s", "-workers=64"]
                    command += [f"-duration={args.seconds + 30}s", f"-targets={targets}"]
                    attack = subprocess.Popen([*command, "-timeout=5s", "-output=/dev/null"])
                time.sleep(20)
                figures = shares(args.seconds)
            finally:
                stream.terminate()
                stream.wait()
                if attack is not None:
                    attack.terminate()
                    attack.wait()
    figures["total"] = round(sum(figures.values()), 3)
    print(name, figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", type=float, default=200)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    runs = {name: measure(name, args) for name in CONFIGS}
    speed = {name: run.get("speed", 0.0) for name, run in runs.items()}
    write_report(
        "stack_cpu",
        {
            "stream": args.stream,
            "rate": args.rate,
            "seconds": args.seconds,
            "cores": runs,
            "speed_after_over_before": round(speed["after"] / speed["before"], 3)
            if speed["before"]
            else None,
        },
    )


if __name__ == "__main__":
    main()
