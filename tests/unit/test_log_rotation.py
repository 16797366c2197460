"""Local-mode log rotation: bounded copies and sizes, with a live writer appending meanwhile."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from infra.keeper import Keeper
from infra.log_rotation import LogRotation
from infra.supervisor import Supervisor

WRITER = """
import sys, time
n = 0
while True:
    sys.stdout.write(f"line {n:08d} " + "x" * 80 + "\\n")
    sys.stdout.flush()
    n += 1
    if n % 200 == 0:
        time.sleep(0.001)
"""


FULL_LINE = re.compile(r"line (\d{8}) x{80}")


def numbers(path: Path) -> list[int]:
    """The numbers of the whole lines of ``path``. A copy may end in a line the writer was
    half-way through when it was read (copytruncate's window), so fragments are skipped."""
    lines = path.read_text(errors="replace").splitlines()
    return [int(m[1]) for line in lines if (m := FULL_LINE.fullmatch(line))]


def test_small_log_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "speed-0.log"
    log.write_text("a few lines\n")
    assert LogRotation(max_bytes=1_000, keep=3).rotate_all(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speed-0.log"]


def test_rotation_keeps_a_bounded_number_of_copies_in_order(tmp_path: Path) -> None:
    """A service appends through the descriptor it inherited (as the supervisor starts it)
    while the log is rotated again and again: at most ``keep`` copies stay, the live log
    shrinks back, and read from the oldest copy to the live log the lines stay in order with
    nothing duplicated; only the newest copies' lines are kept."""
    log = tmp_path / "serving.log"
    rotation = LogRotation(max_bytes=20_000, keep=3)
    with log.open("ab") as out:
        writer = subprocess.Popen([sys.executable, "-c", WRITER], stdout=out)
    try:
        rotated = 0
        deadline = time.monotonic() + 20
        while rotated < 8 and time.monotonic() < deadline:
            rotated += rotation.rotate(log)
            time.sleep(0.01)
    finally:
        writer.terminate()
        writer.wait()
    assert rotated >= 8, "the writer did not fill the log fast enough to rotate"
    copies = sorted(tmp_path.glob("serving.log.*"))
    assert [p.name for p in copies] == ["serving.log.1", "serving.log.2", "serving.log.3"]
    seen = [n for path in (*reversed(copies), log) for n in numbers(path)]
    assert seen == sorted(set(seen)), "lines out of order or duplicated across rotations"
    assert seen[0] > 0, "the oldest copies were not dropped"
    for path in (*copies, log):  # each about one rotation's worth, not everything since
        assert path.stat().st_size < 20 * rotation.max_bytes


def test_the_keeper_rotates_the_logs_between_its_checks(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "run", tmp_path / "logs")
    supervisor.logs_dir.mkdir()
    big = supervisor.log_file("airflow-scheduler")
    big.write_text("x" * 5_000)
    small = supervisor.log_file("serving")
    small.write_text("y" * 10)
    stop = threading.Event()
    keeper = Keeper(supervisor, [], rotation=LogRotation(max_bytes=1_000, keep=2))
    thread = threading.Thread(target=keeper.run, args=(stop, 0.05))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while big.stat().st_size and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert big.stat().st_size == 0
    assert (supervisor.logs_dir / "airflow-scheduler.log.1").read_text() == "x" * 5_000
    assert small.read_text() == "y" * 10
    assert not (supervisor.logs_dir / "serving.log.1").exists()
