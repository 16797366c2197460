"""The services of local mode, in start order, built from the one Settings object.

Each entry says how to run a service and how to tell that it is healthy. Later layers join
this list; ``platform up`` starts them in order and ``down`` stops them in reverse.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
from kafka import KafkaConsumer
from kafka.errors import KafkaError

from infra.airflow_env import AIRFLOW_PORT, API_HOST, airflow_env, jwt_env
from infra.kafka_broker import broker_command
from infra.monitoring import prometheus_service
from infra.s3_server import local_s3_server, local_s3_service
from infra.supervisor import Service, Supervisor
from infra.topics import ensure_topics
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings

VENV_BIN = Path(sys.executable).parent


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kafka_healthy(settings: Settings) -> bool:
    """The broker answers a metadata request (not just an open port)."""
    host, _, port = settings.bootstrap_servers[0].rpartition(":")
    if not port_open(host, int(port)):
        return False
    try:
        consumer = KafkaConsumer(
            **settings.kafka_client_config,
            request_timeout_ms=5000,
        )
    except KafkaError:
        return False
    try:
        consumer.topics()
        return True
    except KafkaError:
        return False
    finally:
        consumer.close()


def _create_topics(settings: Settings) -> None:
    ensure_topics(settings)


def kafka_service(
    settings: Settings, node: dict[str, str] | None = None, scram: Sequence[str] = ()
) -> Service:
    """The broker; ``node`` overrides server.properties keys, ``scram`` adds SCRAM users at
    the first format (``infra.kafka_broker.broker_command``)."""
    return Service(
        name="kafka",
        command=lambda: broker_command(settings, node, scram=scram),
        healthy=lambda: kafka_healthy(settings),
        start_timeout_s=90,
        stop_timeout_s=30,
        after_start=lambda: _create_topics(settings),
    )


def speed_health(settings: Settings, instance: int) -> dict[str, object] | None:
    """The speed process's own health report (``/readyz`` on its metrics port), or None."""
    url = f"http://127.0.0.1:{settings.speed_metrics_port + instance}/readyz"
    try:
        return httpx.get(url, timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None


def speed_health_cell(report: dict[str, object] | None) -> str:
    """A speed process's health as one cell of ``status``: how long it is stalled and how far
    behind, or why a partition is halted (local mode and the cluster show the same)."""
    if report is None:
        return "unhealthy (no health endpoint)"
    if report.get("status") == "ok":
        return f"healthy (lag {report.get('lag')})"
    if report.get("status") == "halted":  # needs an operator: lambda-speed reset-offsets
        return f"HALTED: {report.get('reason')}"
    return f"STALLED {report.get('stalled_s')}s (lag {report.get('lag')})"


def speed_service(settings: Settings, instance: int) -> Service:
    return Service(
        name=f"speed-{instance}",
        command=lambda: [sys.executable, "-m", "speed_layer.main", "--instance", str(instance)],
        healthy=lambda: (speed_health(settings, instance) or {}).get("status") == "ok",
        start_timeout_s=60,
        stop_timeout_s=30,
    )


def airflow_healthy(port: int) -> bool:
    try:
        response = httpx.get(f"http://{API_HOST}:{port}/api/v2/monitor/health", timeout=10)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def airflow_services(settings: Settings) -> list[Service]:
    """Airflow 3's parts as separate supervised processes; the metadata DB is migrated first."""
    env = {**airflow_env(settings), "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    airflow = str(VENV_BIN / "airflow")

    def api_server() -> list[str]:
        subprocess.run(
            [airflow, "db", "migrate"], env={**os.environ, **env}, check=True, capture_output=True
        )
        return [airflow, "api-server"]

    nice = settings.batch_nice  # the batch side: its tasks and spark-submit inherit it
    return [
        Service(
            "airflow-api",
            api_server,
            lambda: airflow_healthy(AIRFLOW_PORT),
            {**env, **jwt_env(settings, "api-server")},
            start_timeout_s=180,
            stop_timeout_s=30,
            nice=nice,
        ),
        *(
            Service(
                f"airflow-{part}",
                lambda p=part: [airflow, p],
                lambda: True,
                {**env, **jwt_env(settings, part)},
                nice=nice,
            )
            for part in ("scheduler", "dag-processor", "triggerer")
        ),
        Service(
            "airflow-upkeep",
            lambda: [sys.executable, "-m", "infra.platform", "airflow-upkeep"],
            lambda: True,
            nice=nice,
        ),
    ]


def serving_service(settings: Settings) -> Service:
    def healthy() -> bool:
        try:
            url = f"http://{settings.api_host}:{settings.api_port}/healthz"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return Service(
        "serving", lambda: [sys.executable, "-m", "serving.main"], healthy, start_timeout_s=60
    )


def demo_producer_service(settings: Settings, rate: float) -> Service:
    return Service(
        name="producer",
        command=lambda: [
            sys.executable,
            "-m",
            "producer.cli",
            "--rate",
            str(rate),
            "--duration",
            "0",
            "--accounts",
            "2000",
            "--duplicates",
            "0.01",
            "--late",
            "0.01",
            "--malformed",
            "0.005",
            "--quiet",
        ],
        healthy=lambda: True,
    )


def keeper_service(demo: bool, demo_rate: float) -> Service:
    """The resident keeper that restarts the other services when they die."""
    return Service(
        name="keeper",
        command=lambda: [
            sys.executable,
            "-m",
            "infra.platform",
            "keep",
            "--demo" if demo else "--no-demo",
            "--demo-rate",
            str(demo_rate),
        ],
        healthy=lambda: True,
    )


def platform_services(settings: Settings, demo: bool, demo_rate: float) -> list[Service]:
    """Every service of local mode, in start order (``down`` stops in reverse)."""
    services = []
    assert settings.logs_dir is not None
    s3 = local_s3_server(settings, Supervisor(Layout(settings.data_dir).run_dir, settings.logs_dir))
    if s3 is not None:  # the master dataset on s3:// at a loopback endpoint: serve it here
        services.append(local_s3_service(s3))
    services.append(kafka_service(settings))
    services += [speed_service(settings, i) for i in range(settings.speed_processes)]
    services += airflow_services(settings)
    services.append(serving_service(settings))
    if settings.prometheus_enabled:  # scrapes the services above: started after them
        services.append(prometheus_service(settings))
    if demo:
        services.append(demo_producer_service(settings, demo_rate))
    return services
