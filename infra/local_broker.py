"""A private Kafka broker on chosen ports and data directory (tests and benchmarks).

The same broker ``make up`` runs (``infra.kafka_broker``), supervised the same way, so tests and
benchmarks never touch a developer's running platform.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.services import kafka_service, port_open
from infra.supervisor import Supervisor
from lambda_contracts.settings import Settings


@dataclass
class Broker:
    settings: Settings
    supervisor: Supervisor
    node: dict[str, str] | None = None  # server.properties overrides (a secured listener)
    scram: Sequence[str] = ()  # SCRAM users written at the first format

    def start(self) -> None:
        self.supervisor.start(kafka_service(self.settings, self.node, self.scram))

    def stop(self) -> None:
        self.supervisor.stop("kafka", timeout_s=30)

    def kill(self) -> None:
        """SIGKILL the broker (a crash, not a clean stop)."""
        pid = self.supervisor.pid("kafka")
        if pid:
            os.killpg(pid, 9)
            while self.supervisor.pid("kafka"):
                time.sleep(0.1)


def start_broker(
    data_dir: Path,
    port: int,
    controller_port: int,
    node: dict[str, str] | None = None,
    scram: Sequence[str] = (),
    more_ports: Sequence[int] = (),
) -> Broker:
    """Start a private broker; refuse ports another process holds (its broker would otherwise
    answer the health check, and the tests would run against a stranger). ``port`` is its
    plaintext listener; ``node`` may add listeners (on ``more_ports``) and other keys."""
    busy = [p for p in (port, controller_port, *more_ports) if port_open("127.0.0.1", p)]
    if busy:
        raise RuntimeError(f"port(s) {busy} already in use: stop whatever listens there first")
    settings = Settings(
        data_dir=data_dir,
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_controller_port=controller_port,
        kafka_heap="384m",
    )
    assert settings.logs_dir is not None
    broker = Broker(settings, Supervisor(data_dir / "run", settings.logs_dir), node, scram)
    broker.start()
    return broker
