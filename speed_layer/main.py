"""``lambda-speed``: run one speed-layer process (several may run in one consumer group).

SIGTERM or SIGINT finishes the current batch, lands what is buffered, commits and leaves the
group before the process exits (code 0). A process that stalls (records waiting, no progress
for ``LAMBDA_SPEED_EXIT_AFTER_S``) exits with code 75 so that its supervisor restarts it.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Annotated, TypeVar

import structlog
import typer
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from lambda_contracts.settings import Settings, get_settings
from speed_layer.consumer import SpeedLayer, retry_delay
from speed_layer.dlq import DeadLetters
from speed_layer.health import EXIT_STALLED, Health, Watchdog, serve
from speed_layer.metrics import SpeedMetrics

T = TypeVar("T")

# A blocking client call (offset look-ups, commits) gives up after this; the loop retries.
KAFKA_REQUEST_TIMEOUT_MS = 30_000

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


def make_consumer(settings: Settings, instance: int) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.speed_group,
        client_id=f"speed-layer-{instance}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.speed_max_poll_records,
        fetch_max_wait_ms=50,
        metadata_max_age_ms=10_000,  # notice new topics/partitions within seconds
        request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
        # Records of aborted transactions are not events; open transactions are waited for.
        isolation_level="read_committed",
    )


def make_dlq_producer(settings: Settings, instance: int) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        client_id=f"speed-layer-dlq-{instance}",
    )


def connect(factory: Callable[[], T], stop: threading.Event) -> T | None:
    """Build a Kafka client, retrying with backoff while no broker answers (None if stopped)."""
    failures = 0
    while not stop.is_set():
        try:
            return factory()
        except KafkaError as exc:
            failures += 1
            delay = retry_delay(failures)
            structlog.get_logger("speed_layer").warning(
                "no broker yet; retrying", error=repr(exc), retry_in_s=round(delay, 2)
            )
            stop.wait(delay)
    return None


@app.command()
def run(
    instance: Annotated[int, typer.Option(help="process index: client id and metrics port")] = 0,
    metrics: Annotated[bool, typer.Option(help="serve metrics and health over HTTP")] = True,
) -> None:
    """Consume transactions into the speed store and the landing zone until SIGTERM."""
    configure_logging()
    settings = get_settings()
    stop = threading.Event()
    stopping = threading.Event()  # asked to stop by a signal: the watchdog stands down

    def on_signal(*_: object) -> None:
        stopping.set()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    speed_metrics = SpeedMetrics()
    health = Health(settings.speed_unhealthy_after_s)
    if metrics:
        port = serve(health, speed_metrics, settings.speed_metrics_port + instance)
        structlog.get_logger("speed_layer").info("serving metrics and health", port=port)
    # The watchdog runs from the start: a client that never reaches its broker is a stall.
    watchdog = Watchdog(
        health,
        speed_metrics,
        settings.speed_exit_after_s,
        stop,
        stopping=stopping,
        idle_extra_s=settings.speed_idle_exit_extra_s,
    )
    watchdog.start()
    try:
        consumer = connect(lambda: make_consumer(settings, instance), stop)
        producer = connect(lambda: make_dlq_producer(settings, instance), stop)
        if consumer is not None and producer is not None:
            layer = SpeedLayer(
                settings, consumer, DeadLetters(producer, settings.dlq_topic), speed_metrics, health
            )
            try:
                layer.run(stop)
            finally:
                producer.close(timeout=5)
    finally:
        watchdog.halt()
    if watchdog.tripped.is_set():
        raise typer.Exit(EXIT_STALLED)


if __name__ == "__main__":
    app()
