"""``lambda-platform airflow …`` becomes the Airflow process (exec), so a SIGTERM from docker
stop or a supervisor reaches Airflow itself and not a wrapper that dies and leaves it running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.pipeline import free_port

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.integration]
CLEAN_STOP = ("Exiting gracefully upon receiving signal 15", "Finished server process")


def cmdline(pid: int) -> str:
    return (Path(f"/proc/{pid}/cmdline").read_bytes()).replace(b"\0", b" ").decode()


def test_the_airflow_command_is_the_process_that_gets_sigterm(tmp_path: Path) -> None:
    env = {
        # Airflow's own variables set by other tests of the session would win over the
        # platform's configuration for this data directory (as compose's do): leave them out.
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "LAMBDA_DATA_DIR": str(tmp_path),
        # The triggerer serves its logs on a port: one no other Airflow of the machine holds.
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }
    platform = str(BIN / "lambda-platform")
    subprocess.run([platform, "airflow", "db", "migrate"], env=env, check=True, timeout=300)
    argv = ["airflow", "triggerer"]  # runs until told to stop
    proc = subprocess.Popen(
        [platform, *argv],
        env=env,
        stdout=(tmp_path / "airflow.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its group: what it started is cleaned up below
    )
    try:
        deadline = time.monotonic() + 30
        line = cmdline(proc.pid)
        # Empty for an instant while the exec replaces the process image.
        while ("lambda-platform" in line or not line) and time.monotonic() < deadline:
            time.sleep(0.1)
            line = cmdline(proc.pid)
        log = (tmp_path / "airflow.log").read_text()[-2000:]
        assert proc.poll() is None, f"it ended before it could be signalled:\n{log}"
        assert "bin/airflow triggerer" in line and "lambda-platform" not in line
        log = tmp_path / "airflow.log"
        while "Starting the triggerer" not in log.read_text() and time.monotonic() < deadline + 60:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)  # its signal handlers are set by then
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        # Airflow's own handlers ran (a clean stop, logged), in the process that was signalled:
        # the triggerer's job loop, or its log server's if the signal came first to that.
        stopped = (tmp_path / "airflow.log").read_text()
        assert any(m in stopped for m in CLEAN_STOP), stopped[-2000:]
    finally:
        # The triggerer's own children (its log server) are not this test's subject: none
        # may outlive it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
