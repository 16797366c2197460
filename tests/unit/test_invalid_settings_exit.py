"""An invalid setting stops a long-running process at once: exit 78 and one line naming it,
not a traceback, and not a crash its supervisor would restart forever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
COMMANDS = {
    "speed": [str(BIN / "lambda-speed"), "--instance", "0"],
    "serving": [str(BIN / "lambda-serve")],
    "producer": [str(BIN / "lambda-produce"), "--count", "1"],
}
CASES = {
    "a SASL protocol without credentials": (
        {"LAMBDA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
        "kafka_sasl_mechanism",
    ),
    "an unknown protocol": ({"LAMBDA_KAFKA_SECURITY_PROTOCOL": "TLS"}, "LAMBDA_KAFKA_SECURITY"),
    "a partition count below one": ({"LAMBDA_PARTITIONS": "0"}, "LAMBDA_PARTITIONS"),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("service", COMMANDS)
def test_an_invalid_setting_exits_78_with_one_line(service: str, case: str, tmp_path: Path) -> None:
    extra, named = CASES[case]
    env = {**os.environ, "LAMBDA_DATA_DIR": str(tmp_path), **extra}
    done = subprocess.run(
        COMMANDS[service], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 78, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: invalid")]
    assert len(errors) == 1 and named in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
