"""Soak the speed layer's start-up: a fresh topic and group, a burst of records, catch up; repeat.

This is how the "wedged client" was reproduced: each round creates a topic (the DLQ too),
produces records, starts ``lambda-speed`` (kafka-python at DEBUG) and waits until the store's
offsets reach the topic's end. A round that does not catch up within ``--timeout`` is a wedge;
its log is kept. ``--client-path`` runs the speed process against another kafka-python
(e.g. a ``pip install --target`` of 2.3.x) to compare clients under the same loop.

    python -m bench.speed_start_loop --rounds 30 [--client-path /tmp/kp23] [--stress]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from kafka import KafkaProducer

from bench.common import RESULTS, write_report
from infra.local_broker import start_broker
from infra.topics import ensure_topics
from lambda_contracts.db import make_engine
from lambda_contracts.settings import Settings
from tests.support.pipeline import end_offsets, env_for, stored_offsets

app = typer.Typer(add_completion=False)

DEBUG_WRAPPER = (
    "import logging, speed_layer.main as m\n"
    "orig = m.configure_logging\n"
    "def cl():\n"
    "    orig(); logging.getLogger('kafka').setLevel(logging.DEBUG)\n"
    "m.configure_logging = cl\n"
    "m.app()\n"
)


def _produce(settings: Settings, count: int) -> None:
    producer = KafkaProducer(**settings.kafka_client_config, acks="all")
    for i in range(count):
        value = {
            "TransactionID": f"{uuid.uuid4().hex}-{i}",
            "CreatedTime": 1_700_000_000_000 + i,
            "SourceAccountID": str(i % 50),
            "TargetAccountID": "9",
            "Amount": 10,
        }
        producer.send(settings.topic, key=str(i % 50).encode(), value=json.dumps(value).encode())
    producer.flush()
    producer.close()


def _caught_up(settings: Settings, timeout: float) -> bool:
    ends = end_offsets(settings)
    engine = make_engine(settings.speed_store_url or "")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                stored = stored_offsets(engine, settings.topic)
            except Exception:
                stored = {}
            if all(stored.get(p, 0) >= e for p, e in ends.items() if e > 0):
                return True
            time.sleep(0.25)
        return False
    finally:
        engine.dispose()


@app.command()
def main(
    rounds: Annotated[int, typer.Option()] = 30,
    records: Annotated[int, typer.Option()] = 3000,
    timeout: Annotated[float, typer.Option(help="seconds to catch up before a round fails")] = 60,
    client_path: Annotated[str, typer.Option(help="PYTHONPATH entry with another client")] = "",
    stress: Annotated[int, typer.Option(help="processes burning a core each meanwhile")] = 0,
    concurrent: Annotated[bool, typer.Option(help="produce while the speed layer starts")] = False,
    port: Annotated[int, typer.Option()] = 39092,
) -> None:
    """Run the loop; print one line per round and a summary; keep logs of failed rounds."""
    # SIGTERM unwinds like Ctrl-C, so the broker and burners below are always stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="speed-loop-"))
    broker = start_broker(work / "kafka", port, port + 1)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(stress)]
    out = RESULTS / "speed_start_loop"
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    try:
        for n in range(rounds):
            suffix = uuid.uuid4().hex[:8]
            settings = Settings(
                data_dir=work / f"round-{n}",
                kafka_bootstrap=broker.settings.kafka_bootstrap,
                topic=f"tx-{suffix}",
                dlq_topic=f"tx-{suffix}.dlq",
                speed_group=f"speed-{suffix}",
            )
            ensure_topics(settings)
            if not concurrent:
                _produce(settings, records)
            env = env_for(settings)
            if client_path:
                env["PYTHONPATH"] = f"{client_path}:{env.get('PYTHONPATH', '')}"
            log_path = settings.data_dir / "speed.log"
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-c", DEBUG_WRAPPER, "--no-metrics"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                if concurrent:
                    _produce(settings, records)
                ok = _caught_up(settings, timeout)
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            took = time.monotonic() - started
            if not ok:
                failures += 1
                shutil.copy(log_path, out / f"wedge-{suffix}.log")
            print(f"round {n}: {'ok' if ok else 'WEDGED'} in {took:.1f}s", flush=True)
            shutil.rmtree(settings.data_dir, ignore_errors=True)
    finally:
        for burner in burners:
            burner.kill()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    client = client_path or "installed kafka-python"
    write_report(
        "speed_start_loop",
        {"rounds": rounds, "wedged": failures, "client": client, "stress": stress},
    )
    print(f"{rounds - failures} ok, {failures} wedged ({client}); logs of wedges in {out}")
    raise typer.Exit(1 if failures else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
