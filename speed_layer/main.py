"""``lambda-speed``: run one speed-layer process (several may run in one consumer group).

SIGTERM or SIGINT finishes the current batch, lands what is buffered, commits and leaves the
group before the process exits (code 0). A process that stalls (records waiting, no progress
for ``LAMBDA_SPEED_EXIT_AFTER_S``) exits with code 75 so that its supervisor restarts it.
A partition whose log contradicts the stored offsets is halted (``/readyz``: ``halted``) until
``lambda-speed reset-offsets`` moves its cursors (stop the speed processes first).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Annotated, TypeVar

import structlog
import typer
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from lambda_contracts.kafka_access import REFUSALS
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.startup import (
    checked_kafka_access,
    checked_layout,
    checked_settings,
    checked_views,
    exit_if_refused,
)
from speed_layer.consumer import SpeedLayer, retry_delay
from speed_layer.dlq import DeadLetters
from speed_layer.health import EXIT_STALLED, Health, Watchdog, serve
from speed_layer.metrics import SpeedMetrics
from speed_layer.replication import ReplicationWatch
from speed_layer.reset import (
    STOP_FIRST,
    ResetRefused,
    Target,
    apply_reset,
    commit_group_offsets,
    group_members,
    log_bounds,
    targets_for,
)
from speed_layer.store import SpeedStore
from speed_layer.store_deploy import StaleDeploymentError

T = TypeVar("T")

# A blocking client call (offset look-ups, commits) gives up after this; the loop retries.
KAFKA_REQUEST_TIMEOUT_MS = 30_000
LOG_END_TIMEOUT_MS = 5_000
# The poll loop allocates several containers per record (decoded JSON, rows, fold keys), all
# freed by reference counting; with the default threshold (700) the cyclic collector runs
# every few records (bench.speed_profile, 200k events: 6.2-12.6 s with it, 5.1-6.6 s
# without, on a loaded machine). Cycles are rare here: a young collection every 50k
# allocations still bounds them.
GC_GEN0_THRESHOLD = 50_000
GIL_SWITCH_INTERVAL_S = 0.0001

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
        **settings.kafka_client_config,
        group_id=settings.speed_group,
        client_id=f"speed-layer-{instance}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.speed_max_poll_records,
        # At a low rate a fetch waits (up to the bound) for a few records instead of coming
        # back with one: fewer polls and store transactions per event, at most that much later.
        fetch_min_bytes=settings.speed_fetch_min_bytes,
        fetch_max_wait_ms=settings.speed_fetch_max_wait_ms,
        metadata_max_age_ms=10_000,  # notice new topics/partitions within seconds
        request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
        # Records of aborted transactions are not events; open transactions are waited for.
        isolation_level="read_committed",
    )


def make_log_end_reader(settings: Settings, instance: int) -> KafkaConsumer:
    """A client of no group that reads the high watermarks (read_uncommitted end offsets),
    which idle-partition sealing needs (``Housekeeping._high_watermarks``)."""
    return KafkaConsumer(
        **settings.kafka_client_config,
        client_id=f"speed-layer-{instance}-ends",
        enable_auto_commit=False,
        # Asked from the poll loop once a second: an answer that does not come within 5 s
        # only postpones a seal, and must not hold the loop (and its rebalances) for 30 s.
        request_timeout_ms=LOG_END_TIMEOUT_MS,
        metadata_max_age_ms=10_000,  # follow a leader that moved within seconds
        isolation_level="read_uncommitted",
    )


def make_dlq_producer(settings: Settings, instance: int) -> KafkaProducer:
    return KafkaProducer(
        **settings.kafka_client_config,
        acks="all",
        enable_idempotence=True,
        client_id=f"speed-layer-dlq-{instance}",
    )


def close_quietly(*clients: KafkaProducer | KafkaConsumer) -> None:
    """Close Kafka clients at shutdown; a client's own failure to close (kafka-python can
    raise from a wake-up socket it closed already) must not turn a clean stop into exit 1:
    the store and the landing zone hold everything by now."""
    for client in clients:
        try:
            if isinstance(client, KafkaProducer):
                client.close(timeout=5)
            else:
                client.close()
        except Exception as exc:
            log = structlog.get_logger("speed_layer")
            log.warning("kafka client close failed", error=repr(exc))


def connect(factory: Callable[[], T], settings: Settings, stop: threading.Event) -> T | None:
    """Build a Kafka client, retrying with backoff while no broker answers (None if stopped);
    a refusal of the brokers exits 78."""
    failures = 0
    while not stop.is_set():
        try:
            return factory()
        except KafkaError as exc:
            exit_if_refused(settings, exc)  # no retry can change the brokers' answer
            failures += 1
            delay = retry_delay(failures)
            structlog.get_logger("speed_layer").warning(
                "no broker yet; retrying", error=repr(exc), retry_in_s=round(delay, 2)
            )
            stop.wait(delay)
    return None


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    instance: Annotated[int, typer.Option(help="process index: client id and metrics port")] = 0,
    metrics: Annotated[bool, typer.Option(help="serve metrics and health over HTTP")] = True,
) -> None:
    """Without a command: consume transactions into the speed store and the landing zone
    until SIGTERM (``lambda-speed --instance N``, as every supervisor starts it)."""
    if ctx.invoked_subcommand is None:
        run(instance, metrics)


STARTED_EVENT = "speed process started"
# EX_TEMPFAIL, as a stall: the supervisor starts the process again, on the current views file.
EXIT_REDEPLOYED = 75


def run(instance: int, metrics: bool) -> None:
    """Consume transactions into the speed store and the landing zone until SIGTERM."""
    configure_logging()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    # The store transaction itself runs in the store process, with an interpreter of its own.
    # The threads beside the poll loop in this one — the committer (it encodes a transaction's
    # batches for the store process, then waits for and reads its answer) and the landing
    # writer — get the GIL back within a tenth of a millisecond of wanting it, not 5 ms: a
    # transaction is neither sent late nor its answer left waiting on the loop's Python work.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    settings = checked_settings()
    stop = threading.Event()
    stopping = threading.Event()  # asked to stop by a signal: the watchdog stands down

    def on_signal(*_: object) -> None:
        stopping.set()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    # From here on a SIGTERM is a clean stop (before, it ends the interpreter as it starts).
    structlog.get_logger("speed_layer").info(STARTED_EVENT, instance=instance, pid=os.getpid())
    speed_metrics = SpeedMetrics()
    health = Health(settings.speed_unhealthy_after_s)
    if metrics:
        port = serve(
            health,
            speed_metrics,
            settings.speed_metrics_port + instance,
            settings.speed_metrics_host,
        )
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
    if metrics:  # what the brokers say of the topics' replicas, for the alerts
        ReplicationWatch(settings, speed_metrics, stop, instance).start()
    try:
        checked_layout(settings)  # a bad storage setting exits 78 here, before any work
        views = checked_views(settings)  # so does an invalid views file
        checked_kafka_access(settings)  # and credentials the brokers refuse
        consumer = connect(lambda: make_consumer(settings, instance), settings, stop)
        producer = connect(lambda: make_dlq_producer(settings, instance), settings, stop)
        log_ends = connect(lambda: make_log_end_reader(settings, instance), settings, stop)
        if consumer is not None and producer is not None and log_ends is not None:
            layer = SpeedLayer(
                settings,
                consumer,
                DeadLetters(producer, settings.dlq_topic, speed_metrics.dlq_sent),
                speed_metrics,
                health,
                log_ends=log_ends,
                views=views,
            )
            gc.freeze()  # what start-up built lives as long as the process: never rescan it
            try:
                layer.run(stop)
            except REFUSALS as exc:  # an ACL the principal lacks: a setting, not a hiccup
                exit_if_refused(settings, exc)
            except StaleDeploymentError as exc:  # another views file was deployed meanwhile
                structlog.get_logger("speed_layer").error("views redeployed", error=str(exc))
                print(f"error: {exc}", file=sys.stderr, flush=True)
                raise typer.Exit(EXIT_REDEPLOYED) from None
            finally:
                close_quietly(producer, log_ends)
    finally:
        watchdog.halt()
    if watchdog.tripped.is_set():
        raise typer.Exit(EXIT_STALLED)


@app.command("reset-offsets")
def reset_offsets(
    partition: Annotated[
        list[int] | None, typer.Option("--partition", help="a partition to reset (repeatable)")
    ] = None,
    all_partitions: Annotated[bool, typer.Option("--all", help="every partition")] = False,
    to_beginning: Annotated[
        bool, typer.Option("--to-beginning", help="resume at the log's first offset")
    ] = False,
    to_end: Annotated[
        bool, typer.Option("--to-end", help="resume at the log's end (what is there is skipped)")
    ] = False,
    to: Annotated[int | None, typer.Option("--to", help="resume at this offset")] = None,
) -> None:
    """Move a halted partition's cursors (store offset and landing progress) to the log's
    beginning, end or an offset. Run it with every speed process stopped."""
    settings = checked_settings()
    partitions = _chosen_partitions(settings, partition, all_partitions)
    target = _chosen_target(to_beginning, to_end, to)
    typer.echo(STOP_FIRST)
    members = group_members(settings)
    if members:
        typer.echo(
            f"refused: consumer group {settings.speed_group!r} has live members "
            f"({', '.join(sorted(members))}). {STOP_FIRST}",
            err=True,
        )
        raise typer.Exit(2)
    starts, ends = log_bounds(settings, partitions)
    try:
        targets = targets_for(partitions, starts, ends, target, to)
    except ResetRefused as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    store = SpeedStore.from_settings(settings)
    for change in apply_reset(store, Layout.of(settings), targets):
        typer.echo(change.describe())
    commit_group_offsets(settings, targets)
    typer.echo(f"committed the same offsets for consumer group {settings.speed_group!r}")


def _chosen_partitions(settings: Settings, partitions: list[int] | None, every: bool) -> list[int]:
    """``--all`` or one or more ``--partition``, each a partition of the topic."""
    if every == bool(partitions):
        raise typer.BadParameter("give either --all or one or more --partition")
    chosen = list(range(settings.partitions)) if every else sorted(set(partitions or []))
    unknown = [p for p in chosen if not 0 <= p < settings.partitions]
    if unknown:
        raise typer.BadParameter(f"no such partition(s): {unknown}")
    return chosen


def _chosen_target(to_beginning: bool, to_end: bool, to: int | None) -> Target:
    """Exactly one of ``--to-beginning``, ``--to-end`` and ``--to OFFSET``."""
    if to_beginning + to_end + (to is not None) != 1:
        raise typer.BadParameter("give exactly one of --to-beginning, --to-end, --to OFFSET")
    if to_beginning:
        return Target.BEGINNING
    return Target.END if to_end else Target.OFFSET


if __name__ == "__main__":
    app()
