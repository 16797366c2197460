"""Generates a realistic stream of payment events: pure, seeded, no I/O.

Accounts have skewed (Zipf-like) activity; configurable fractions of the stream are exact
duplicates, conflicting duplicates (same TransactionID and source account, different amount),
late events (CreatedTime hours or days in the past) and malformed records. Each produced
record says what it is, so tests and benchmarks can compute the ground truth.
"""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass
from decimal import Decimal

from lambda_contracts.events import Transaction


def run_id_prefix() -> str:
    """A TransactionID prefix unique to this run: a restarted producer (same seed, counter from
    1) must not re-send the IDs of an earlier run, which dedup would drop as duplicates."""
    return f"{uuid.uuid4().hex[:12]}-"


@dataclass(frozen=True)
class SimulatorConfig:
    accounts: int = 1000
    skew: float = 1.1
    duplicates: float = 0.0
    conflicting_duplicates: float = 0.0
    late: float = 0.0
    late_max_hours: float = 72.0
    malformed: float = 0.0
    max_amount: int = 5000
    seed: int = 42
    id_prefix: str = ""  # the CLI gives each run its own (run_id_prefix) unless told one


@dataclass(frozen=True)
class SimRecord:
    """One record to send: key and value bytes, and what the simulator meant it to be."""

    key: bytes | None
    value: bytes
    kind: str  # "valid" | "duplicate" | "conflict" | "late" | "malformed"
    event: Transaction | None


MALFORMED_SAMPLES: tuple[bytes, ...] = (
    b'{"TransactionID": "x", "CreatedTime": "yesterday", "SourceAccountID": "1",'
    b' "TargetAccountID": "2", "Amount": 1}',
    b'{"CreatedTime": 1550149860000, "SourceAccountID": "1", "TargetAccountID": "2", "Amount": 1}',
    b'{"TransactionID": "m", "CreatedTime": 1550149860000, "SourceAccountID": "1",'
    b' "TargetAccountID": "2", "Amount": -5}',
    b'{"TransactionID": "m", "CreatedTime": 1550149860000, "SourceAccountID": "1",'
    b' "TargetAccountID": "2", "Amount": 1.005}',
    b"not json at all",
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
)


class Simulator:
    """Iterates SimRecords; ``now_ms`` is supplied per record so replays are deterministic."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        weights = [1.0 / (rank**config.skew) for rank in range(1, config.accounts + 1)]
        self._accounts = [f"{100000 + i}" for i in range(config.accounts)]
        self._cum_weights = list(itertools.accumulate(weights))
        self._seq = itertools.count(1)
        self._recent: list[Transaction] = []

    def _account(self) -> str:
        return self._rng.choices(self._accounts, cum_weights=self._cum_weights)[0]

    def _amount(self) -> Decimal:
        cents = self._rng.randint(1, self.config.max_amount * 100)
        return Decimal(cents).scaleb(-2)

    def _fresh(self, now_ms: int, late: bool) -> Transaction:
        created = now_ms
        if late:
            created -= int(self._rng.uniform(1, self.config.late_max_hours) * 3_600_000)
        return Transaction(
            TransactionID=f"{self.config.id_prefix}{next(self._seq)}",
            CreatedTime=created,
            SourceAccountID=self._account(),
            TargetAccountID=self._account(),
            Amount=self._amount(),
        )

    def _remember(self, event: Transaction) -> None:
        self._recent.append(event)
        if len(self._recent) > 1000:
            del self._recent[: len(self._recent) - 1000]

    def next(self, now_ms: int) -> SimRecord:
        cfg = self.config
        roll = self._rng.random()
        if roll < cfg.malformed:
            value = self._rng.choice(MALFORMED_SAMPLES)
            return SimRecord(None, value, "malformed", None)
        roll -= cfg.malformed
        if self._recent and roll < cfg.duplicates:
            original = self._rng.choice(self._recent)
            return SimRecord(original.key, original.to_json_bytes(), "duplicate", original)
        roll -= cfg.duplicates
        if self._recent and roll < cfg.conflicting_duplicates:
            original = self._rng.choice(self._recent)
            clash = original.model_copy(update={"amount": self._amount()})
            return SimRecord(clash.key, clash.to_json_bytes(), "conflict", clash)
        roll -= cfg.conflicting_duplicates
        is_late = roll < cfg.late
        event = self._fresh(now_ms, is_late)
        self._remember(event)
        return SimRecord(event.key, event.to_json_bytes(), "late" if is_late else "valid", event)
