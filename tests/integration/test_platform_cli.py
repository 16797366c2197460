"""``make up`` / ``make down`` through the platform CLI, ``make batch`` under the dashboard in
Chromium, and the lecture's examples against it.

Runs the real local platform on its default ports (the lecture's code hard-codes
localhost:9092) with a temporary data directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from infra.services import port_open
from tests.support.browser import ARTIFACTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def platform(
    cmd: str, env: dict[str, str], timeout: float = 600, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lambda-platform"), cmd, *args],
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


def test_up_twice_lecture_examples_then_down_leaves_nothing(tab: Page, tmp_path: Path) -> None:
    if port_open("127.0.0.1", 9092):
        pytest.skip("a platform already runs on localhost:9092 (make down first)")
    data_dir = tmp_path / "platform-data"
    views_file = tmp_path / "views.toml"
    env = {
        **os.environ,
        "LAMBDA_DATA_DIR": str(data_dir),
        "LAMBDA_VIEWS_FILE": str(views_file),
        "LAMBDA_SPEED_UNHEALTHY_AFTER_S": "5",
        "LAMBDA_BUCKET_MS": "20000",  # `make batch` waits for a sealed bucket: not 5 minutes
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

        operator_stops_and_starts_serving(env, data_dir)

        deploy_views(env, data_dir, views_file)
        dashboard_follows_make_batch(tab, env)
        airflow_upkeep_ran(data_dir)

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
        assert_no_secret_in_logs(data_dir)
    finally:
        down = platform("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_using(data_dir) == []
    assert pids(data_dir) == {}
    assert not port_open("127.0.0.1", 9092)
    again = platform("status", env)
    assert again.returncode == 3  # nothing runs


def assert_no_secret_in_logs(data_dir: Path) -> None:
    """After a run with a batch through Airflow: neither the Airflow login's password nor the
    JWT secret is in any line of any log (the services' and Airflow's task logs)."""
    airflow_dir = data_dir / "airflow"
    password = json.loads((airflow_dir / "admin-password.json").read_text())["admin"]
    secrets = {"admin password": password, "JWT secret": (airflow_dir / "jwt-secret").read_text()}
    logs = [p for p in data_dir.rglob("*.log*") if p.is_file()]
    assert any(p.parent.name == "logs" for p in logs)  # the services' logs are there
    for path in logs:
        text = path.read_text(errors="replace")
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} is in {path}"


def airflow_upkeep_ran(data_dir: Path) -> None:
    """Airflow's upkeep runs as a service of its own beside the scheduler, and its pass (old
    task logs, then ``airflow db clean``) succeeded against the live metadata database."""
    log = (data_dir / "logs" / "airflow-upkeep.log").read_text()
    assert "airflow upkeep" in log and "logs_deleted=" in log, log[-2000:]
    assert "failed" not in log, log[-2000:]


def operator_stops_and_starts_serving(env: dict[str, str], data_dir: Path) -> None:
    """``lambda-platform stop serving`` keeps it down past the keeper's checks, as ``docker
    compose stop`` does; ``start serving`` brings it back healthy and kept again."""
    stopped = platform("stop", env, 120, "serving")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    time.sleep(5)  # the keeper checks every second
    assert "serving" not in pids(data_dir)
    status = platform("status", env)
    assert "stopped (lambda-platform start serving)" in status.stdout, status.stdout
    unknown = platform("stop", env, 60, "no-such-service")
    assert unknown.returncode == 2 and "one of:" in unknown.stdout
    started = platform("start", env, 300, "serving")
    assert started.returncode == 0, started.stdout + started.stderr
    first = pids(data_dir)["serving"]
    os.killpg(int(first), signal.SIGKILL)  # released: the keeper restarts it again
    wait_for(lambda: pids(data_dir).get("serving") not in (None, first), 60)
    wait_for(lambda: platform("status", env).returncode == 0, 120)


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


def merge_shown(tab: Page) -> dict[str, Any]:
    """The merge panel's version and the sum of its windows' batch parts, read at once."""
    return tab.evaluate(
        """() => ({
          version: document.getElementById("merge").dataset.version,
          batch: [...document.querySelectorAll("#merge-rows td.batch")]
            .reduce((n, td) => n + Number(td.textContent), 0),
        })"""
    )


def dashboard_follows_make_batch(tab: Page, env: dict[str, str]) -> None:
    """``make batch`` runs lambda_batch in Airflow, printing its tasks as they go; the open
    dashboard then shows the new version: batch parts grown, the run starred and linked to
    its page in the Airflow UI."""
    tab.goto("http://127.0.0.1:8000/")
    tab.wait_for_selector("body[data-loaded=true]", timeout=60_000)
    before = merge_shown(tab)
    batch = subprocess.run(
        ["make", "batch"], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert batch.returncode == 0, batch.stdout[-4000:] + batch.stderr[-2000:]
    assert "recompute" in batch.stdout and "publish" in batch.stdout  # the tasks, as they ran
    version = httpx.get("http://127.0.0.1:8000/v1/freshness", timeout=10).json()["batch_version"]
    assert version and version != before["version"]
    tab.wait_for_function(
        f"document.getElementById('merge').dataset.version === {version!r}"
        f" && document.querySelector('#runs-rows tbody tr')?.dataset.version === {version!r}",
        timeout=60_000,
    )
    after = merge_shown(tab)
    assert after["batch"] > before["batch"], (before, after)
    newest = tab.locator("#runs-rows tbody tr").first
    assert newest.locator("td.version").inner_text().startswith("★")
    link = newest.locator("a").get_attribute("href") or ""
    assert link.startswith("http://127.0.0.1:8080/dags/lambda_batch/runs/"), link
    assert httpx.get(link, timeout=30).status_code == 200  # the Airflow UI serves the page
    tab.screenshot(path=str(ARTIFACTS / "dashboard-make-batch.png"), full_page=True)
