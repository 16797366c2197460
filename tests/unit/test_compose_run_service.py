"""The image's entrypoint: exit 78 holds the container, any other exit passes through, and a
stop signal to the process group reaches the service, whose own exit code ends it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RUN_SERVICE = Path(__file__).resolve().parents[2] / "infra" / "compose" / "run-service"
CLEAN_STOP = (
    "import signal, sys, time\n"
    "def stop(*_):\n"
    "    print('stopping cleanly', flush=True)\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def start(*command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(RUN_SERVICE), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as under `tini -g`
    )


@pytest.mark.parametrize("code", [0, 1, 75])
def test_any_other_exit_code_ends_the_container_with_it(code: int) -> None:
    proc = start(sys.executable, "-c", f"raise SystemExit({code})")
    assert proc.wait(timeout=10) == code


def test_a_configuration_error_holds_instead_of_exiting() -> None:
    proc = start(
        sys.executable,
        "-c",
        "import sys; print('error: bad setting', file=sys.stderr); sys.exit(78)",
    )
    time.sleep(2)
    assert proc.poll() is None, "exit 78 must not end the container (no crash loop)"
    os.killpg(proc.pid, signal.SIGTERM)  # docker stop, through tini -g
    _, err = proc.communicate(timeout=10)
    lines = err.splitlines()
    assert lines[0] == "error: bad setting"
    assert "exited 78 (configuration error): holding, not restarting" in lines[1]


def test_a_stop_signal_reaches_the_service_which_stops_cleanly() -> None:
    proc = start(sys.executable, "-c", CLEAN_STOP)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert "stopping cleanly" in proc.stdout.read()
