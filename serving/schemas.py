"""Response models (the OpenAPI contract). Money is exact: integer cents in, decimal strings
with 2 places out.

The hot routes build their answers as plain dicts with the functions below and serialise them
with orjson (:mod:`serving.routes.common`); these models document the shape, and the contract
test (schemathesis) holds the answers to it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer

Money = Annotated[
    Decimal,
    PlainSerializer(lambda d: f"{d:.2f}", return_type=str, when_used="json"),
    Field(description='exact amount as a decimal string with 2 places, e.g. "3000.10"'),
]


def money(cents: int | None) -> str | None:
    """Integer cents as an exact decimal string with 2 places ("3000.10"); None stays None."""
    if cents is None:
        return None
    units, rest = divmod(abs(cents), 100)
    return f"{'-' if cents < 0 else ''}{units}.{rest:02d}"


def average(sum_cents: int, count: int) -> str | None:
    """sum / count, rounded half-even to the cent, exactly (integer arithmetic, no float)."""
    if count == 0:
        return None
    quotient, remainder = divmod(sum_cents, count)  # floor; 0 <= remainder < count
    if 2 * remainder > count or (2 * remainder == count and quotient % 2 == 1):
        quotient += 1
    return money(quotient)


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
    batch_version: str | None = Field(
        description="the published version (CURRENT); meta says which version answers read "
        "now (the one before, for the seconds a new one takes to load)"
    )
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
