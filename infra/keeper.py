"""The keeper: restarts a local-mode service that died, with backoff, like compose's restart policy.

``lambda-platform up`` starts it last and ``down`` stops it first, so it never fights an
operator's stop. Each restart is counted in ``run/<service>.restarts.json``, which
``make status`` shows. A service that keeps dying is restarted after 1, 2, 4 … up to
``backoff_max_s`` seconds; one that stayed up for ``stable_after_s`` starts the count of
consecutive failures again. One that exited with 78 (a configuration error) stays down, as
compose's ``on-failure`` cannot know to do, until an operator fixes the setting and runs
``make up``. One an operator stopped (``lambda-platform stop NAME``) is *held*: it stays
down, as ``docker compose stop`` leaves a container, until ``start NAME`` or ``up``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from infra.log_rotation import LogRotation
from infra.supervisor import Service, Supervisor
from lambda_contracts.startup import EXIT_CONFIG

log = structlog.get_logger("keeper")


@dataclass
class RestartRecord:
    restarts: int = 0  # restarts since the platform was brought up
    consecutive: int = 0  # failures without a stable run in between
    last_restart_at: float = 0.0  # epoch seconds
    down_since: float | None = None  # epoch seconds the keeper first saw it down
    last_exit: int | None = None  # exit code of the last process the keeper started, if known


def record_path(supervisor: Supervisor, name: str) -> Path:
    return supervisor.run_dir / f"{name}.restarts.json"


def read_record(supervisor: Supervisor, name: str) -> RestartRecord:
    try:
        return RestartRecord(**json.loads(record_path(supervisor, name).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return RestartRecord()


def clear_records(supervisor: Supervisor, names: Sequence[str]) -> None:
    for name in names:
        record_path(supervisor, name).unlink(missing_ok=True)


def held_path(supervisor: Supervisor, name: str) -> Path:
    return supervisor.run_dir / f"{name}.held"


def hold(supervisor: Supervisor, name: str) -> None:
    """Mark ``name`` as stopped by an operator: the keeper leaves it down. Made before the
    stop, so the keeper never sees the service down without the mark."""
    path = held_path(supervisor, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def release(supervisor: Supervisor, name: str) -> None:
    held_path(supervisor, name).unlink(missing_ok=True)


def is_held(supervisor: Supervisor, name: str) -> bool:
    return held_path(supervisor, name).exists()


def backoff_s(consecutive: int, backoff_max_s: float) -> float:
    """Delay before the next restart after ``consecutive`` failures (0 for the first)."""
    return 0.0 if consecutive <= 0 else min(backoff_max_s, 2.0 ** (consecutive - 1))


class Keeper:
    def __init__(
        self,
        supervisor: Supervisor,
        services: Sequence[Service],
        backoff_max_s: float = 60.0,
        stable_after_s: float = 60.0,
        rotation: LogRotation | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.rotation = rotation  # the services' logs, rotated by size between checks
        self.services = list(services)
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self._children: dict[int, str] = {}  # pid -> service, processes this keeper started

    def check_once(self, stop: threading.Event | None = None) -> list[str]:
        """Restart every service that is down and due; return the names restarted."""
        restarted = []
        for service in self.services:
            if stop is not None and stop.is_set():
                break
            record = read_record(self.supervisor, service.name)
            now = time.time()
            if self.supervisor.pid(service.name) is not None:
                if record.consecutive and now - record.last_restart_at >= self.stable_after_s:
                    record.consecutive = 0
                    self._write(service.name, record)
                continue
            if record.last_exit == EXIT_CONFIG:
                continue  # a setting is wrong: restarting cannot fix it (its log says what)
            if is_held(self.supervisor, service.name):
                continue  # stopped by an operator: down until ``start`` or ``up``
            if record.down_since is None:
                record.down_since = now
                log.warning("service is down", service=service.name)
            if now - record.down_since < backoff_s(record.consecutive, self.backoff_max_s):
                self._write(service.name, record)
                continue
            record.restarts += 1
            record.consecutive += 1
            record.last_restart_at = now
            record.down_since = None
            self._write(service.name, record)
            try:
                pid = self.supervisor.start(service)
                self._children[pid] = service.name
                log.info("restarted", service=service.name, pid=pid, restarts=record.restarts)
                restarted.append(service.name)
            except Exception as exc:  # the keeper outlives any one service's trouble
                log.error("restart failed", service=service.name, error=repr(exc))
        return restarted

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        while not stop.wait(interval_s):
            self._reap()
            self.check_once(stop)
            self._rotate_logs()

    def _rotate_logs(self) -> None:
        if self.rotation is None:
            return
        try:
            for rotated in self.rotation.rotate_all(self.supervisor.logs_dir):
                log.info("log rotated", log=str(rotated))
        except OSError as exc:  # a full disk must not stop the restarts
            log.error("log rotation failed", error=repr(exc))

    def _reap(self) -> None:
        """Collect the exit status of the processes this keeper started (never other children
        of its process: a test may run the keeper next to processes it waits for itself)."""
        for pid, name in list(self._children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            del self._children[pid]
            record = read_record(self.supervisor, name)
            record.last_exit = os.waitstatus_to_exitcode(status) if status else None
            self._write(name, record)
            log.warning("service exited", service=name, pid=pid, exit_code=record.last_exit)

    def _write(self, name: str, record: RestartRecord) -> None:
        path = record_path(self.supervisor, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(path)
