"""The demo producer's TransactionIDs are unique per run unless a prefix is given."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from lambda_contracts.events import Transaction, parse_event
from producer import cli


class Acknowledged:
    """What kafka-python's send() returns, already completed."""

    is_done = True

    def __init__(self, offset: int) -> None:
        self.metadata = SimpleNamespace(partition=0, offset=offset, timestamp=0)

    def get(self, timeout: float | None = None) -> Any:
        return self.metadata


class RecordingProducer:
    """Stands in for KafkaProducer: records what would be sent, acknowledges at once."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def send(self, topic: str, key: bytes | None, value: bytes) -> Acknowledged:
        self.values.append(value)
        return Acknowledged(len(self.values))

    def flush(self) -> None: ...

    def close(self) -> None: ...


def run_ids(monkeypatch: pytest.MonkeyPatch, *args: str) -> set[str]:
    sent = RecordingProducer()
    monkeypatch.setattr(cli, "make_producer", lambda *a, **k: sent)
    result = CliRunner().invoke(cli.app, ["--count", "20", "--rate", "0", "--quiet", *args])
    assert result.exit_code == 0, result.output
    events = [parse_event(v) for v in sent.values]
    return {e.transaction_id for e in events if isinstance(e, Transaction)}


def test_each_run_has_its_own_transaction_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = run_ids(monkeypatch), run_ids(monkeypatch)  # same seed, as after a restart
    assert len(first) == len(second) == 20
    assert not first & second
    assert not any(tid.startswith("None") for tid in first)


def test_an_explicit_prefix_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_ids(monkeypatch, "--id-prefix", "a") == {f"a{i}" for i in range(1, 21)}
