"""The speed process watches itself: health on its metrics port, and a watchdog that exits.

The consumer loop reports what it observes (``Health.observe``); a watchdog thread turns the
stall time into the ``speed_stalled_seconds`` and ``speed_healthy`` metrics and, past the exit
bound, stops the process with a clear error so that its supervisor (``lambda-platform``'s
keeper, compose's restart policy, the cluster scripts) starts a fresh one. Restarting is safe:
the store's offsets and the landing progress make the new process resume exactly once. If the
loop is blocked inside a client call and does not stop within a grace period, the watchdog ends
the process itself.

A *halted* partition is different: its log and the stored offsets disagree (the topic was
recreated or truncated, or retention removed records never counted), so reading on would skip
or double-count. The consumer pauses it and records the fault here: ``/readyz`` answers 503
with status ``halted`` and the reason, but the watchdog does not restart the process for it —
a new process would only halt again. An operator resolves it with ``lambda-speed
reset-offsets``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import make_wsgi_app

from speed_layer.metrics import SpeedMetrics
from speed_layer.progress import ProgressWatch

log = structlog.get_logger("speed_layer.health")

EXIT_STALLED = 75  # EX_TEMPFAIL: try again (a supervisor restarts the process)


@dataclass(frozen=True)
class HealthReport:
    healthy: bool
    stalled_s: float
    lag: int
    partitions: list[int]
    halted: dict[int, str] = field(default_factory=dict)  # partition -> reason

    @property
    def status(self) -> str:
        """``halted`` wins over ``stalled``: it needs an operator, a stall only a restart."""
        if self.halted:
            return "halted"
        return "ok" if self.healthy else "stalled"

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "stalled_s": round(self.stalled_s, 1),
            "lag": self.lag,
            "partitions": self.partitions,
        }
        if self.halted:
            body["halted"] = {str(p): reason for p, reason in sorted(self.halted.items())}
            body["reason"] = "; ".join(
                f"partition {p}: {reason}" for p, reason in sorted(self.halted.items())
            )
        return body


class Health:
    """Thread-safe progress state shared by the consumer loop, the watchdog and HTTP."""

    def __init__(self, unhealthy_after_s: float) -> None:
        self.unhealthy_after_s = unhealthy_after_s
        self._lock = threading.Lock()
        self._watch = ProgressWatch(started_at=time.monotonic())
        self._partitions: list[int] = []
        self._halted: dict[int, str] = {}

    def observe(
        self, stored: dict[int, int | None], ends: dict[int, int], own: Iterable[int]
    ) -> None:
        with self._lock:
            self._watch.observe(time.monotonic(), stored, ends)
            self._partitions = sorted(own)

    def halt(self, partition: int, reason: str) -> None:
        """Record that a partition is halted (unhealthy until an operator resets it)."""
        with self._lock:
            self._halted[partition] = reason

    def forget_halts(self, partitions: Iterable[int]) -> None:
        """The partitions left this process: their new owner judges them afresh."""
        with self._lock:
            for partition in partitions:
                self._halted.pop(partition, None)

    def report(self) -> HealthReport:
        with self._lock:
            stalled = self._watch.stalled_for(time.monotonic())
            healthy = stalled < self.unhealthy_after_s and not self._halted
            return HealthReport(
                healthy, stalled, self._watch.lag, self._partitions, dict(self._halted)
            )


class Watchdog(threading.Thread):
    """Exports the stall time every second; past ``exit_after_s`` stops the process."""

    def __init__(
        self,
        health: Health,
        metrics: SpeedMetrics,
        exit_after_s: float,
        stop: threading.Event,
        grace_s: float = 20.0,
        hard_exit: Callable[[int], None] = os._exit,
        stopping: threading.Event | None = None,
        idle_extra_s: float = 0.0,
    ) -> None:
        super().__init__(name="speed-watchdog", daemon=True)
        self.health = health
        self.metrics = metrics
        self.exit_after_s = exit_after_s
        self.stop = stop
        self.grace_s = grace_s
        self.hard_exit = hard_exit
        self.tripped = threading.Event()
        self._halt = threading.Event()
        self.stopping = stopping or threading.Event()
        self.idle_extra_s = idle_extra_s

    def run(self) -> None:
        while not self._halt.wait(1.0):
            report = self.health.report()
            self.metrics.stalled_seconds.set(report.stalled_s)
            self.metrics.healthy.set(1 if report.healthy else 0)
            if self.stopping.is_set():
                return  # a requested shutdown is not a stall
            # Halted partitions are not watched for progress (the loop leaves them out), so a
            # halt alone never trips the watchdog: a restart would only halt again.
            # A member with no partitions waits out a rebalance that another member holds
            # open (up to max.poll.interval) before it counts as stalled itself, so idle
            # members do not all exit at once because one owner is slow.
            bound = self.exit_after_s + (0 if report.partitions else self.idle_extra_s)
            if report.stalled_s >= bound:
                self._trip(report)
                return

    def halt(self) -> None:
        self._halt.set()

    def _trip(self, report: HealthReport) -> None:
        log.error(
            "speed layer stalled: no progress with records to read; exiting so that the "
            "supervisor restarts it (exactly-once state makes a restart safe)",
            stalled_s=round(report.stalled_s, 1),
            lag=report.lag,
            partitions=report.partitions,
            exit_code=EXIT_STALLED,
        )
        self.tripped.set()
        self.stop.set()
        # The loop may be blocked inside a client call: give it a moment to stop cleanly.
        if not self._halt.wait(self.grace_s):
            log.error("consumer loop did not stop; ending the process", grace_s=self.grace_s)
            self.hard_exit(EXIT_STALLED)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve(health: Health, metrics: SpeedMetrics, port: int, host: str = "127.0.0.1") -> int:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` in a daemon thread; return the port."""
    prometheus = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in ("/healthz", "/readyz"):
            report = health.report()
            status = "200 OK" if report.healthy else "503 Service Unavailable"
            body = json.dumps(report.as_json()).encode()
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        return prometheus(environ, start_response)

    server = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="speed-http", daemon=True).start()
    return server.server_port
