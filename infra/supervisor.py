"""Run services as background process groups with pid files, one log file each.

Each service gets its own session (process group), so stopping it reaches every child it
spawned (Airflow's and Spark's children survive a kill of their parent otherwise). Stop is
SIGTERM to the group, a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lambda_contracts.priority import lower_autogroup_priority


@dataclass(frozen=True)
class Service:
    name: str
    command: Callable[[], list[str]]
    healthy: Callable[[], bool]
    env: Mapping[str, str] = field(default_factory=dict)
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 20.0
    after_start: Callable[[], None] | None = None
    nice: int = 0  # > 0: work that yields the CPU to the others (lambda_contracts.priority)


class ServiceError(RuntimeError):
    """A service did not become healthy or could not be started."""


@dataclass(frozen=True)
class Supervisor:
    run_dir: Path
    logs_dir: Path

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The pid of the running service, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _alive(pid):
            return pid
        self.pid_file(name).unlink(missing_ok=True)
        return None

    def start(self, service: Service) -> int:
        """Start the service unless it runs; wait until healthy. Returns its pid.

        A service that is already running is only checked (and its after-start step, which
        must be idempotent, is run again); one that fails to become healthy is stopped.
        """
        pid = self.spawn(service)
        self.wait_healthy(service)
        return pid

    def spawn(self, service: Service) -> int:
        """Start the service unless it runs, without waiting; returns its pid. (Peers that
        only become healthy together, such as a controller quorum, are spawned first.)"""
        pid = self.pid(service.name)
        return pid if pid is not None else self._spawn(service)

    def wait_healthy(self, service: Service) -> None:
        """Wait until a spawned service is healthy, then run its after-start step; a service
        that exits or misses its start timeout is stopped and raises ServiceError."""
        deadline = time.monotonic() + service.start_timeout_s
        while not service.healthy():
            if self.pid(service.name) is None:
                raise ServiceError(f"{service.name} exited; see {self.log_file(service.name)}")
            if time.monotonic() > deadline:
                self.stop(service.name, service.stop_timeout_s)
                raise ServiceError(
                    f"{service.name} not healthy after {service.start_timeout_s:.0f}s; "
                    f"see {self.log_file(service.name)}"
                )
            time.sleep(0.5)
        if service.after_start:
            service.after_start()

    def _spawn(self, service: Service) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        try:
            command = service.command()
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            raise ServiceError(f"{service.name} cannot be prepared: {exc}") from exc
        # Every descendant inherits this tag, even one that starts its own session (Airflow's
        # task runners do): ``stop`` finds them by it.
        env = {**os.environ, **service.env, TAG_VARIABLE: self.tag(service.name)}
        with self.log_file(service.name).open("ab") as log:
            log.write(f"\n--- start {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
            log.flush()
            if service.nice > 0:  # set before exec: every thread and child inherits it
                command = ["nice", "-n", str(service.nice), *command]
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        lower_autogroup_priority(service.nice, proc.pid)  # the session's group too
        self.pid_file(service.name).write_text(str(proc.pid))
        return proc.pid

    def tag(self, name: str) -> str:
        return f"{self.run_dir}/{name}"

    def stop(self, name: str, timeout_s: float = 20.0) -> bool:
        """SIGTERM the service's process group, wait, then SIGKILL; then the same for any
        process that still carries the service's tag. True if it was running."""
        pid = self.pid(name)
        if pid is None:
            # Nothing under the pid file, but a process may still carry the tag (one started
            # between a spawn and its pid file, or a child that outlived its group).
            self._stop_tagged(self.tag(name), timeout_s)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while _group_alive(pid):
                time.sleep(0.1)
        self._stop_tagged(self.tag(name), timeout_s)
        self.pid_file(name).unlink(missing_ok=True)
        return True

    def _stop_tagged(self, tag: str, timeout_s: float) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            stragglers = _tagged(tag)
            for pid in stragglers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + timeout_s
            while stragglers and time.monotonic() < deadline:
                stragglers = [p for p in stragglers if _alive(p)]
                time.sleep(0.1)
            if not stragglers:
                return


TAG_VARIABLE = "LAMBDA_SUPERVISED_AS"


def _tagged(tag: str) -> list[int]:
    """Live processes whose environment carries ``TAG_VARIABLE=tag``."""
    marker = f"{TAG_VARIABLE}={tag}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes() + b"\0"
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if marker in environ and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(_alive(pid) for pid in _group_members(pgid))


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
