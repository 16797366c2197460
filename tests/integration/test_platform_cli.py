"""``make up`` / ``make down`` through the platform CLI, and the lecture's examples against it.

Runs the real local platform on its default ports (the lecture's code hard-codes
localhost:9092) with a temporary data directory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infra.services import port_open

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def platform(
    cmd: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lambda-platform"), cmd],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention path (in argv or environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if str(path).encode() in cmdline + environ:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def pids(data_dir: Path) -> dict[str, str]:
    run = data_dir / "run"
    return {p.stem: p.read_text() for p in run.glob("*.pid")} if run.exists() else {}


def wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(1)


def read_lines_until(proc: subprocess.Popen[str], count: int, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while len(lines) < count and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(line.strip())
    return lines


def test_up_twice_lecture_examples_then_down_leaves_nothing(tmp_path: Path) -> None:
    if port_open("127.0.0.1", 9092):
        pytest.skip("a platform already runs on localhost:9092 (make down first)")
    data_dir = tmp_path / "platform-data"
    views_file = tmp_path / "views.toml"
    env = {
        **os.environ,
        "LAMBDA_DATA_DIR": str(data_dir),
        "LAMBDA_VIEWS_FILE": str(views_file),
        "LAMBDA_SPEED_UNHEALTHY_AFTER_S": "5",
        "COLUMNS": "250",  # one table row per service in `status`
        "DEMO": "1",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    try:
        first = platform("up", env)
        assert first.returncode == 0, first.stdout + first.stderr
        started = pids(data_dir)
        assert {"kafka", "speed-0", "producer"} <= started.keys()

        second = platform("up", env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "already running" in second.stdout
        again = {k: v for k, v in pids(data_dir).items() if k != "keeper"}
        assert again == {k: v for k, v in started.items() if k != "keeper"}, (
            "a second `up` must not restart running services (only the keeper, by design)"
        )
        assert "keeper" in pids(data_dir)

        # Health is a point-in-time check (Airflow's API answers slowly on a busy machine).
        def all_healthy_with_speed_lag() -> bool:
            status = platform("status", env)
            return status.returncode == 0 and "healthy (lag" in status.stdout

        wait_for(all_healthy_with_speed_lag, 120)

        # A speed process that dies is brought back by the keeper, and status counts it.
        os.killpg(int(started["speed-0"]), signal.SIGKILL)
        wait_for(lambda: pids(data_dir).get("speed-0") not in (None, started["speed-0"]), 60)
        # The new member waits for the dead one's session to expire before it is assigned
        # partitions, and status honestly says STALLED meanwhile: wait for healthy, not once.
        restarted_row = re.compile(r"speed-0\s.*healthy.*│\s*1\s*│")
        wait_for(lambda: restarted_row.search(platform("status", env).stdout) is not None, 90)

        # A frozen broker: the speed layer reports itself stalled, status says so and fails.
        kafka_pid = int(pids(data_dir)["kafka"])
        os.killpg(kafka_pid, signal.SIGSTOP)
        try:
            time.sleep(12)
            frozen = platform("status", env)
        finally:
            os.killpg(kafka_pid, signal.SIGCONT)
        assert frozen.returncode == 1 and "STALLED" in frozen.stdout, frozen.stdout
        wait_for(lambda: platform("status", env).returncode == 0, 120)

        deploy_views(env, data_dir, views_file)

        lecture = ROOT / "tests" / "lecture"
        producer = subprocess.Popen(
            [sys.executable, str(lecture / "producer.py")], env=env, stdout=subprocess.DEVNULL
        )
        consumer = subprocess.Popen(
            [sys.executable, "-u", str(lecture / "consumer.py")],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            lines = read_lines_until(consumer, 3, timeout=60)
        finally:
            producer.kill()
            consumer.kill()
            producer.wait()
            consumer.wait()
        assert lines == ["{'counter': 0}", "{'counter': 1}", "{'counter': 2}"]
    finally:
        down = platform("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_using(data_dir) == []
    assert pids(data_dir) == {}
    assert not port_open("127.0.0.1", 9092)
    again = platform("status", env)
    assert again.returncode == 3  # nothing runs


def deploy_views(env: dict[str, str], data_dir: Path, views_file: Path) -> None:
    """``make deploy``: an invalid file is refused and restarts nothing; a valid one restarts
    the speed process and serving on it, and the API lists its view."""
    views_file.write_text('[[views]]\nname = "bad"\ndimensions = []\nwindow = "week"\n')
    before = pids(data_dir)
    refused = platform("deploy", env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert 'view "bad": unknown window "week"' in refused.stdout
    assert pids(data_dir) == before, "a refused deploy must not restart anything"

    views_file.write_text(
        '[[views]]\nname = "received_hourly"\ndimensions = ["TargetAccountID"]\n'
        'window = "hour"\nmeasures = ["count", "sum"]\n'
    )
    deployed = platform("deploy", env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    after = pids(data_dir)
    assert after["speed-0"] != before["speed-0"] and after["serving"] != before["serving"]
    listed = httpx.get("http://127.0.0.1:8000/v1/views", timeout=10).json()["views"]
    received = next(v for v in listed if v["name"] == "received_hourly")
    assert received["state"] in ("building", "serving")
    assert received["definition"]["dimensions"] == ["TargetAccountID"]
