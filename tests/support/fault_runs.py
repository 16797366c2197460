"""Running a fault run (``bench.chaos``, ``bench.cluster_chaos``) from a test: a run that
overstays is told to stop (SIGTERM: it takes down what it started), never just killed, which
would leave a platform or a cluster's namespaces behind for the tests after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_fault_run(module: str, args: list[str], timeout_s: float) -> tuple[int, str]:
    """Run ``python -m module args`` from the repository without inherited platform
    settings; its exit code and output (the tail, on a time-out, after it cleaned up)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDA_", "AIRFLOW"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        return -1, f"{out}\n(timed out after {timeout_s:.0f}s; stopped with SIGTERM)"
