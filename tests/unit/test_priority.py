"""Batch-side services run at exactly their nice, their session's autogroup included."""

from __future__ import annotations

import os
import time
from pathlib import Path

from infra.supervisor import Service, Supervisor


def nice_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # after "(comm)": state is field 3, nice field 19


def test_a_niced_service_runs_at_its_nice_and_its_autogroup_too(tmp_path: Path) -> None:
    base = nice_of(os.getpid())
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    service = Service("sleeper", lambda: ["sleep", "60"], lambda: True, nice=10)
    pid = sup.start(service)
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < deadline, "the service never started"
            time.sleep(0.01)
        assert nice_of(pid) == min(base + 10, 19)  # not 10 more than a nice set by a race
        autogroup = Path(f"/proc/{pid}/autogroup")
        if autogroup.exists():  # kernels with autogroup scheduling
            assert int(autogroup.read_text().split()[-1]) >= 10
        assert nice_of(os.getpid()) == base  # the supervisor itself is untouched
    finally:
        sup.stop("sleeper", timeout_s=5)
