"""``lambda-speed``: run one speed-layer process (several may run in one consumer group).

SIGTERM or SIGINT finishes the current batch, lands what is buffered, commits and leaves the
group before the process exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import structlog
import typer
from kafka import KafkaConsumer, KafkaProducer

from lambda_contracts.settings import get_settings
from speed_layer.consumer import SpeedLayer
from speed_layer.dlq import DeadLetters
from speed_layer.metrics import SpeedMetrics

app = typer.Typer(add_completion=False, help=__doc__)


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # Group membership changes (join, sync, assignment) are worth seeing in the service log.
    logging.getLogger("kafka.coordinator").setLevel(logging.INFO)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ]
    )


@app.command()
def run(
    instance: Annotated[int, typer.Option(help="process index: client id and metrics port")] = 0,
    metrics: Annotated[bool, typer.Option(help="serve Prometheus metrics")] = True,
) -> None:
    """Consume transactions into the speed store and the landing zone until SIGTERM."""
    configure_logging()
    settings = get_settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.speed_group,
        client_id=f"speed-layer-{instance}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.speed_max_poll_records,
        fetch_max_wait_ms=50,
        metadata_max_age_ms=10_000,  # notice new topics/partitions within seconds
    )
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        client_id=f"speed-layer-dlq-{instance}",
    )
    speed_metrics = SpeedMetrics()
    if metrics:
        speed_metrics.serve(settings.speed_metrics_port + instance)
    layer = SpeedLayer(settings, consumer, DeadLetters(producer, settings.dlq_topic), speed_metrics)
    try:
        layer.run(stop)
    finally:
        producer.close()


if __name__ == "__main__":
    app()
