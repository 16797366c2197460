"""Prometheus for the platform: the scrape configurations of infra/prometheus and local mode's
``prometheus`` service (``LAMBDA_PROMETHEUS_ENABLED=1 make up``).

What exposes Prometheus metrics: serving (``/metrics`` on ``api_port``, every uvicorn worker
summed) and each speed process (``/metrics`` on ``speed_metrics_port`` + its instance). Kafka
(JMX only), Airflow (StatsD or OpenTelemetry, both off) and Spark (its Prometheus servlet is
not enabled) serve none; the batch side shows in serving's ``serving_staleness_seconds``
(side ``batch``: the age of the published horizon) and Kafka's replication in the speed
layer's ``speed_kafka_under_replicated_partitions``.

The three checked-in configurations (local, compose, cluster) hold the targets this module
renders for each; a unit test keeps them equal. Local mode renders its own from the settings
(the process count and ports may differ from the defaults) into ``data_dir/prometheus``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import yaml

from infra.cluster.topology import COMMANDS, PORTS, Network
from infra.supervisor import Service
from lambda_contracts.settings import PROJECT_ROOT, Settings

CONFIG_DIR = PROJECT_ROOT / "infra" / "prometheus"
RULES = CONFIG_DIR / "alerts.yml"
SCRAPE_INTERVAL = "15s"
MISSING_BINARY = (
    "the prometheus binary is not on PATH: install it (apt-get install -y prometheus) "
    "or unset LAMBDA_PROMETHEUS_ENABLED"
)

Targets = dict[str, str]  # service name -> host:port


def scrape_config(
    serving: Targets, speed: Targets, prometheus: str, rules: str, mode: str
) -> dict[str, Any]:
    """A whole prometheus.yml: one job per kind of service, a ``service`` label per target."""

    def job(name: str, targets: Targets) -> dict[str, Any]:
        groups = [{"targets": [t], "labels": {"service": s}} for s, t in targets.items()]
        return {"job_name": name, "static_configs": groups}

    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
            "external_labels": {"platform": mode},
        },
        "rule_files": [rules],
        "scrape_configs": [
            job("prometheus", {"prometheus": prometheus}),
            job("serving", serving),
            job("speed", speed),
        ],
    }


def _reachable(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def local_config(settings: Settings, rules: str = str(RULES)) -> dict[str, Any]:
    """Local mode (``make up``): everything on this host, speed processes 0..N-1."""
    speed_host = _reachable(settings.speed_metrics_host)
    speed = {
        f"speed-{i}": f"{speed_host}:{settings.speed_metrics_port + i}"
        for i in range(settings.speed_processes)
    }
    serving = {"serving": f"{_reachable(settings.api_host)}:{settings.api_port}"}
    prometheus = f"127.0.0.1:{settings.prometheus_port}"
    return scrape_config(serving, speed, prometheus, rules, "local")


def _speed_services(settings: Settings) -> dict[str, int]:
    """The cluster's (and compose's) speed services and their metrics ports."""
    return {
        name: settings.speed_metrics_port + int(argv[argv.index("--instance") + 1])
        for name, argv in sorted(COMMANDS.items())
        if name.startswith("speed-")
    }


def compose_config(settings: Settings) -> dict[str, Any]:
    """docker-compose.yml: the services by their compose names."""
    speed = {name: f"{name}:{port}" for name, port in _speed_services(settings).items()}
    serving = {"serving": f"serving:{PORTS['serving']}"}
    return scrape_config(serving, speed, "localhost:9090", "alerts.yml", "compose")


def cluster_config(
    settings: Settings, net: Network | None = None, rules: str = "alerts.yml"
) -> dict[str, Any]:
    """``make cluster-up``: each host by its address on the bridge, which this machine's own
    namespace reaches (the names resolve only inside the hosts)."""
    net = net or Network(settings.cluster_prefix, settings.cluster_subnet)
    speed = {
        name: f"{net.address(name)}:{port}" for name, port in _speed_services(settings).items()
    }
    serving = {"serving": f"{net.address('serving')}:{PORTS['serving']}"}
    return scrape_config(serving, speed, "localhost:9090", rules, "cluster")


def prometheus_service(
    settings: Settings, config: dict[str, Any] | None = None, home: Path | None = None
) -> Service:
    """Prometheus on 127.0.0.1 (``LAMBDA_PROMETHEUS_PORT``), scraping what ``config`` says
    (default: local mode's, rendered from the settings), its data under ``home`` (default
    ``data_dir/prometheus``)."""
    home = home if home is not None else settings.data_dir / "prometheus"
    config = config if config is not None else local_config(settings)
    port = settings.prometheus_port

    def command() -> list[str]:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError(MISSING_BINARY)
        (home / "data").mkdir(parents=True, exist_ok=True)
        written = home / "prometheus.yml"
        written.write_text(yaml.safe_dump(config, sort_keys=False))
        return [
            binary,
            f"--config.file={written}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=7d",
        ]

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return Service("prometheus", command, healthy, start_timeout_s=60)
