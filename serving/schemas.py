"""Response models. Money is exact: integer cents in, decimal strings with 2 places out."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer

CENT = Decimal("0.01")

Money = Annotated[
    Decimal,
    PlainSerializer(lambda d: f"{d:.2f}", return_type=str, when_used="json"),
    Field(description='exact amount as a decimal string with 2 places, e.g. "3000.10"'),
]


def money(cents: int | None) -> Decimal | None:
    return None if cents is None else Decimal(cents).scaleb(-2)


def average(sum_cents: int, count: int) -> Decimal | None:
    """sum / count, rounded half-even to the cent (exact decimal arithmetic, no float)."""
    if count == 0:
        return None
    return (Decimal(sum_cents) / Decimal(count) / 100).quantize(CENT, rounding=ROUND_HALF_EVEN)


class Meta(BaseModel):
    batch_version: str | None = Field(description="batch version read (null before the first)")
    batch_horizon: str | None = Field(description="exclusive ingest horizon of that version")
    batch_horizon_ms: int | None
    speed_watermark: str | None = Field(
        description="ingest (Kafka) time up to which EVERY partition is counted by speed: the "
        "minimum over partitions of the newest counted timestamp, a caught-up partition counting "
        "as the time its end offset was read; null while a partition with records has counted "
        "nothing. A stalled partition holds it back."
    )
    speed_watermark_ms: int | None = Field(default=None, description="speed_watermark, epoch ms")
    as_of: str = Field(description="when this answer's snapshot was taken")
    events_from_batch: int
    events_from_speed: int


class Summary(BaseModel):
    account_id: str | None = None
    count: int
    sum: Money
    min: Money | None
    max: Money | None
    avg: Money | None
    meta: Meta


class Point(BaseModel):
    window_start: str
    window_start_ms: int
    count: int
    sum: Money
    min: Money | None
    max: Money | None


class Series(BaseModel):
    account_id: str | None = None
    granularity: str
    points: list[Point]
    meta: Meta


class Totals(BaseModel):
    count: int
    sum: Money
    meta: Meta


class AccountTotal(BaseModel):
    account_id: str
    count: int
    sum: Money


class TopAccounts(BaseModel):
    by: str
    accounts: list[AccountTotal]
    meta: Meta


class PartitionLag(BaseModel):
    partition: int
    stored_offset: int
    end_offset: int | None
    lag: int | None


class Freshness(BaseModel):
    batch_version: str | None
    batch_pinned: bool = Field(
        description="a rollback pinned this version: no batch run publishes until resumed"
    )
    batch_horizon: str | None
    batch_horizon_ms: int | None
    landing_watermark: str | None
    landing_watermark_ms: int
    speed_watermark: str | None = Field(description="as in meta")
    speed_watermark_ms: int | None = None
    speed_lag: list[PartitionLag]
    last_batch_run: dict | None
    meta: Meta
