"""``lambda-produce``: send simulated (or file-given) payment events to Kafka.

Idempotent, acks=all producer keyed by SourceAccountID; a progress bar and a summary; with
``--truth`` it writes one JSON line per record as acknowledged by the broker (kind, partition,
offset, value) so tests and benchmarks know exactly what was sent.
"""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from kafka import KafkaProducer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from lambda_contracts.events import Transaction, parse_event
from lambda_contracts.kafka_access import REFUSALS
from lambda_contracts.startup import checked_kafka_access, checked_settings, exit_if_refused
from producer.simulator import SimRecord, Simulator, SimulatorConfig, run_id_prefix

app = typer.Typer(add_completion=False, help=__doc__)
console = Console(stderr=True)


def make_producer(client: dict[str, Any], **overrides: Any) -> KafkaProducer:
    """The platform's producer: idempotent, acks=all, ordered per key; ``client``: the
    brokers and security (``Settings.kafka_client_config``)."""
    config: dict[str, Any] = {
        **client,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "retries": 2_147_483_647,
        "delivery_timeout_ms": 120_000,
        "client_id": "lambda-producer",
    }
    config.update(overrides)
    return KafkaProducer(**config)


def records_from_file(path: Path) -> Iterator[SimRecord]:
    """Each line of a JSONL file is one record value; the key comes from SourceAccountID."""
    with path.open("rb") as fh:
        for line in fh:
            value = line.rstrip(b"\r\n")
            if not value:
                continue
            parsed = parse_event(value)
            if isinstance(parsed, Transaction):
                yield SimRecord(parsed.key, value, "valid", parsed)
            else:
                yield SimRecord(None, value, "malformed", None)


class _Pacer:
    """Keeps a target rate by sleeping until each event's scheduled time (0 = unlimited).

    Sleeps are at least ``tick_s`` long, and the events due meanwhile go out together: at
    200/s that is 4 sends per wake-up and per produce request instead of one, while the rate
    over any second stays the target."""

    def __init__(self, rate: float, tick_s: float = 0.02) -> None:
        self.rate = rate
        self.tick_s = tick_s
        self.start = time.monotonic()

    def wait(self, index: int) -> None:
        if self.rate <= 0:
            return
        delay = self.start + index / self.rate - time.monotonic()
        if delay > 0:
            time.sleep(max(delay, self.tick_s))


@app.command()
def produce(
    count: Annotated[int, typer.Option(help="events to send (0: no limit)")] = 0,
    duration: Annotated[float, typer.Option(help="seconds to run (0: no limit)")] = 0.0,
    rate: Annotated[float, typer.Option(help="events per second (0: as fast as possible)")] = 100.0,
    accounts: Annotated[int, typer.Option(help="number of accounts")] = 1000,
    skew: Annotated[float, typer.Option(help="Zipf exponent of account activity")] = 1.1,
    duplicates: Annotated[float, typer.Option(help="fraction of exact duplicates")] = 0.0,
    conflicts: Annotated[float, typer.Option(help="fraction of conflicting duplicates")] = 0.0,
    late: Annotated[float, typer.Option(help="fraction of late events")] = 0.0,
    late_max_hours: Annotated[float, typer.Option(help="how late a late event can be")] = 72.0,
    malformed: Annotated[float, typer.Option(help="fraction of malformed records")] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    id_prefix: Annotated[
        str | None, typer.Option(help="prefix of generated TransactionIDs (default: per run)")
    ] = None,
    from_file: Annotated[Path | None, typer.Option(help="send JSONL values from a file")] = None,
    truth: Annotated[Path | None, typer.Option(help="write acknowledged records as JSONL")] = None,
    topic: Annotated[str | None, typer.Option(help="topic (default: settings)")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="bootstrap servers")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Produce payment events and print a summary."""
    settings = checked_settings()
    if bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    checked_kafka_access(settings)  # wrong credentials: one line and exit 78, not retries
    client = settings.kafka_client_config
    target = topic or settings.topic
    if from_file is not None:
        source: Iterator[SimRecord] = records_from_file(from_file)
        sim = None
    else:
        sim = Simulator(
            SimulatorConfig(
                accounts=accounts,
                skew=skew,
                duplicates=duplicates,
                conflicting_duplicates=conflicts,
                late=late,
                late_max_hours=late_max_hours,
                malformed=malformed,
                seed=seed,
                id_prefix=run_id_prefix() if id_prefix is None else id_prefix,
            )
        )
        source = iter(lambda: sim.next(int(time.time() * 1000)), None)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    producer = make_producer(client)
    kinds: Counter[str] = Counter()
    pending: deque[tuple[SimRecord, Any]] = deque()
    truth_fh = truth.open("w") if truth else None
    pacer = _Pacer(rate)
    deadline = time.monotonic() + duration if duration > 0 else None
    sent = 0

    def drain(block: bool) -> None:
        while pending and (block or pending[0][1].is_done):
            record, future = pending.popleft()
            meta = future.get(timeout=120)
            if truth_fh:
                truth_fh.write(
                    json.dumps(
                        {
                            "kind": record.kind,
                            "partition": meta.partition,
                            "offset": meta.offset,
                            "timestamp": meta.timestamp,
                            "value_b64": base64.b64encode(record.value).decode("ascii"),
                        }
                    )
                    + "\n"
                )

    progress = Progress(
        TextColumn("[bold]producing[/bold]"),
        BarColumn(),
        TextColumn("{task.completed} sent"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    started = time.monotonic()
    try:
        with progress:
            task = progress.add_task("send", total=count or None)
            for record in source:
                if stop.is_set() or (count and sent >= count):
                    break
                if deadline and time.monotonic() >= deadline:
                    break
                pacer.wait(sent)
                future = producer.send(target, key=record.key, value=record.value)
                pending.append((record, future))
                kinds[record.kind] += 1
                sent += 1
                if len(pending) > 10_000:
                    drain(block=False)
                if sent % 1000 == 0:
                    progress.update(task, completed=sent)
            producer.flush()
            drain(block=True)
            progress.update(task, completed=sent)
    except REFUSALS as exc:  # no ACL to write the topic: a setting to fix, not a hiccup
        exit_if_refused(settings, exc)
    finally:
        producer.close()
        if truth_fh:
            truth_fh.close()
    elapsed = time.monotonic() - started
    summary = ", ".join(f"{k}={v}" for k, v in sorted(kinds.items()))
    console.print(
        f"sent {sent} records to {target} in {elapsed:.1f}s "
        f"({sent / elapsed if elapsed else 0:.0f}/s): {summary or 'nothing'}"
    )


if __name__ == "__main__":
    app()
