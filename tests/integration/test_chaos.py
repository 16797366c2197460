"""The whole-platform fault run, shortened for CI: ``python -m bench.chaos --seconds 120``.

The run itself referees (ground truth read back from the topic, the independent oracle, the
API over HTTP, the landing files, the DLQ); this test holds it to every check it makes and
to having injected each fault. ``make chaos`` runs the five-minute version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.chaos_faults import FAULTS
from infra.services import port_open
from tests.support.fault_runs import run_fault_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "bench" / "results" / "chaos-ci.json"


@pytest.mark.timeout(3300)  # past its own time-out, which stops the run cleanly
def test_fault_run_loses_nothing_and_counts_nothing_twice() -> None:
    if port_open("127.0.0.1", 9092):
        pytest.skip("a platform already runs on localhost:9092 (make down first)")
    REPORT.unlink(missing_ok=True)
    rc, out = run_fault_run("bench.chaos", ["--seconds", "120", "--report", "chaos-ci"], 2400)
    assert rc == 0, out[-20000:]
    report = json.loads(REPORT.read_text())
    assert report["failed_checks"] == []
    assert {f["fault"] for f in report["faults"]} == set(FAULTS)
    skipped = [f for f in report["faults"] if f["note"].startswith(("skipped", "missed"))]
    if os.geteuid() == 0:  # only the full-disk fault needs root (a tmpfs of its own)
        assert skipped == [], skipped
    assert report["lost"] == 0 and report["double"] == 0
    assert report["invalid"] >= 20 and report["dlq"]["missing"] == 0
