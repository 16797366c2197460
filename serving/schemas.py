"""Response models (the OpenAPI contract). Money is exact: integer cents in, decimal strings
with 2 places out.

The hot routes build their answers as plain dicts with the functions below and serialise them
with orjson (:mod:`serving.routes.common`); these models document the shape, and the contract
test (schemathesis) holds the answers to it. Each model carries an example answer, and the
error answers are documented here too (:data:`UNAUTHORIZED`, :data:`INVALID_INPUT`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

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


def example(answer: dict[str, Any]) -> ConfigDict:
    """A model config that shows ``answer`` as the model's example in OpenAPI."""
    return ConfigDict(json_schema_extra={"examples": [answer]})


VERSION_EXAMPLE = "v20261207T050012Z-hourly"
META_EXAMPLE = {
    "batch_version": VERSION_EXAMPLE,
    "batch_horizon": "2026-12-07T05:00:00Z",
    "batch_horizon_ms": 1796619600000,
    "speed_watermark": "2026-12-07T05:59:58.500000Z",
    "speed_watermark_ms": 1796623198500,
    "as_of": "2026-12-07T06:00:01.250000Z",
    "events_from_batch": 18240,
    "events_from_speed": 1310,
}


class Meta(BaseModel):
    model_config = example(META_EXAMPLE)

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
    model_config = example(
        {
            "account_id": "100042",
            "count": 3,
            "sum": "4500.30",
            "min": "500.00",
            "max": "3000.10",
            "avg": "1500.10",
            "meta": META_EXAMPLE,
        }
    )

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
    model_config = example(
        {
            "account_id": "100042",
            "granularity": "hour",
            "points": [
                {
                    "window_start": "2026-12-07T04:00:00Z",
                    "window_start_ms": 1796616000000,
                    "count": 2,
                    "sum": "3500.10",
                    "min": "500.00",
                    "max": "3000.10",
                },
                {
                    "window_start": "2026-12-07T05:00:00Z",
                    "window_start_ms": 1796619600000,
                    "count": 1,
                    "sum": "1000.20",
                    "min": "1000.20",
                    "max": "1000.20",
                },
            ],
            "meta": META_EXAMPLE,
        }
    )

    account_id: str | None = None
    granularity: str
    points: list[Point]
    meta: Meta


class SidePart(BaseModel):
    """What one layer contributed to a window."""

    count: int
    sum: Money


class MergePoint(BaseModel):
    window_start: str
    window_start_ms: int
    count: int = Field(description="the window's answer: batch.count + speed.count")
    sum: Money = Field(description="the window's answer: batch.sum + speed.sum")
    batch: SidePart = Field(description="from the batch view of batch_version: ingest < horizon")
    speed: SidePart = Field(description="from the speed store: ingest bucket >= the horizon")


class MergeSeries(BaseModel):
    """Each window's answer and the part each layer contributed (the dashboard's merge panel).

    The horizon is an ingest time: a window of event time before it can still have a speed
    part (late events), a window after it has only a speed part."""

    model_config = example(
        {
            "granularity": "minute",
            "points": [
                {
                    "window_start": "2026-12-07T04:00:00Z",
                    "window_start_ms": 1796616000000,
                    "count": 120,
                    "sum": "18500.10",
                    "batch": {"count": 118, "sum": "18300.10"},
                    "speed": {"count": 2, "sum": "200.00"},
                },
                {
                    "window_start": "2026-12-07T04:01:00Z",
                    "window_start_ms": 1796616060000,
                    "count": 97,
                    "sum": "12000.00",
                    "batch": {"count": 0, "sum": "0.00"},
                    "speed": {"count": 97, "sum": "12000.00"},
                },
            ],
            "meta": META_EXAMPLE,
        }
    )

    granularity: str
    points: list[MergePoint]
    meta: Meta


class Totals(BaseModel):
    model_config = example({"count": 19550, "sum": "2931744.85", "meta": META_EXAMPLE})

    count: int
    sum: Money
    meta: Meta


class AccountTotal(BaseModel):
    account_id: str
    count: int
    sum: Money


class TopAccounts(BaseModel):
    model_config = example(
        {
            "by": "sum",
            "accounts": [
                {"account_id": "100042", "count": 3, "sum": "4500.30"},
                {"account_id": "100007", "count": 5, "sum": "3120.00"},
            ],
            "meta": META_EXAMPLE,
        }
    )

    by: str
    accounts: list[AccountTotal]
    meta: Meta


class PartitionLag(BaseModel):
    partition: int
    stored_offset: int
    end_offset: int | None
    lag: int | None


class Freshness(BaseModel):
    model_config = example(
        {
            "batch_version": VERSION_EXAMPLE,
            "batch_pinned": False,
            "batch_horizon": "2026-12-07T05:00:00Z",
            "batch_horizon_ms": 1796619600000,
            "landing_watermark": "2026-12-07T05:59:57Z",
            "landing_watermark_ms": 1796623197000,
            "speed_watermark": "2026-12-07T05:59:58.500000Z",
            "speed_watermark_ms": 1796623198500,
            "speed_lag": [
                {"partition": 0, "stored_offset": 10240, "end_offset": 10240, "lag": 0},
                {"partition": 1, "stored_offset": 9810, "end_offset": 9815, "lag": 5},
            ],
            "last_batch_run": {
                "version": VERSION_EXAMPLE,
                "horizon_ms": 1796619600000,
                "previous_horizon_ms": 1796616000000,
                "published_at_ms": 1796619690000,
                "batch_events": 18240,
                "speed_events": 412,
                "drift_events": 0,
                "drift_cents": 0,
            },
            "meta": META_EXAMPLE,
        }
    )

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


class Readiness(BaseModel):
    model_config = example(
        {"ready": True, "checks": {"speed_store": "ok", "batch_views": f"ok ({VERSION_EXAMPLE})"}}
    )

    ready: bool
    checks: dict[str, str] = Field(description='per check "ok …" or "error: <exception class>"')


class ErrorDetail(BaseModel):
    model_config = example({"detail": "missing or wrong bearer token"})

    detail: str


UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorDetail,
        "description": "LAMBDA_API_TOKEN is set and the request lacks `Authorization: Bearer` "
        "with that token",
    }
}
# Merged (``openapi_extra``) into the 422 answer FastAPI documents for a route with parameters:
# its schema stays FastAPI's, this adds what a rejected parameter looks like.
INVALID_INPUT: dict[str, Any] = {
    "responses": {
        "422": {
            "description": "A parameter is missing or invalid, e.g. a time that does not parse "
            "or `end` not after `start`; `detail` names it under `loc`",
            "content": {
                "application/json": {
                    "example": {
                        "detail": [
                            {
                                "type": "value_error",
                                "loc": ["query", "end"],
                                "msg": "end must be after start",
                                "input": "2026-12-07T05:00:00Z",
                            }
                        ]
                    }
                }
            },
        }
    }
}


class BatchRun(BaseModel):
    version: str
    current: bool = Field(description="whether CURRENT points at this version")
    horizon: str
    horizon_ms: int
    previous_horizon_ms: int
    increment_ms: int = Field(description="how much ingest time the run added: horizon - previous")
    published_at: str
    published_at_ms: int
    batch_events: int = Field(description="events the version holds")
    speed_events: int | None = Field(
        description="events the speed layer had counted in the ingest buckets the run absorbed"
    )
    drift_events: int | None = Field(description="speed_events minus batch's count of them")
    drift_amount: Money | None
    mode: str | None = Field(description="incremental or full; null once the version is deleted")
    elapsed_s: float | None = Field(description="how long the Spark job took")
    run_id: str | None
    airflow_run_url: str | None = Field(description="the run in the Airflow UI, if it ran there")


class BatchRuns(BaseModel):
    """The latest batch publishes, newest first, and whether a rollback pins CURRENT."""

    model_config = example(
        {
            "current_version": VERSION_EXAMPLE,
            "pinned": False,
            "runs": [
                {
                    "version": VERSION_EXAMPLE,
                    "current": True,
                    "horizon": "2026-12-07T05:00:00Z",
                    "horizon_ms": 1796619600000,
                    "previous_horizon_ms": 1796619300000,
                    "increment_ms": 300000,
                    "published_at": "2026-12-07T05:00:41Z",
                    "published_at_ms": 1796619641000,
                    "batch_events": 18240,
                    "speed_events": 412,
                    "drift_events": 0,
                    "drift_amount": "0.00",
                    "mode": "incremental",
                    "elapsed_s": 21.4,
                    "run_id": "scheduled__2026-12-07T04:55:00+00:00",
                    "airflow_run_url": "http://127.0.0.1:8080/dags/lambda_batch/runs/"
                    "scheduled__2026-12-07T04%3A55%3A00%2B00%3A00",
                }
            ],
        }
    )

    current_version: str | None
    pinned: bool = Field(description="CURRENT is pinned by a rollback: runs do not publish")
    runs: list[BatchRun]


class GroupMember(BaseModel):
    member_id: str
    client_id: str = Field(description="speed-layer-<instance> for the platform's processes")
    host: str
    partitions: list[int] = Field(description="partitions of the topic it owns")


class GroupPartition(BaseModel):
    partition: int
    owner: str | None = Field(description="client_id of the member that owns it; null: none")
    stored_offset: int = Field(description="the next offset the speed store will count")
    end_offset: int | None
    lag: int | None
    state: str = Field(
        description="ok; stalled (records waiting, no progress for "
        "LAMBDA_SPEED_UNHEALTHY_AFTER_S); halted (a record it cannot pass: see reason)"
    )
    reason: str | None = Field(default=None, description="why it halted, if it did")
    updated_at_ms: int = Field(description="when the speed store last counted on it")


class ConsumerGroupAnswer(BaseModel):
    """The speed layer's consumer group as the broker describes it, with each partition's
    progress in the speed store. ``state`` is null when the broker cannot be reached."""

    model_config = example(
        {
            "group": "speed-layer",
            "state": "Stable",
            "members": [
                {
                    "member_id": "speed-layer-0-3f1c…",
                    "client_id": "speed-layer-0",
                    "host": "/127.0.0.1",
                    "partitions": [0, 1],
                },
                {
                    "member_id": "speed-layer-1-9a2e…",
                    "client_id": "speed-layer-1",
                    "host": "/127.0.0.1",
                    "partitions": [2, 3],
                },
            ],
            "partitions": [
                {
                    "partition": 0,
                    "owner": "speed-layer-0",
                    "stored_offset": 10240,
                    "end_offset": 10240,
                    "lag": 0,
                    "state": "ok",
                    "reason": None,
                    "updated_at_ms": 1796619641000,
                }
            ],
        }
    )

    group: str
    state: str | None
    members: list[GroupMember]
    partitions: list[GroupPartition]


class RejectsMinute(BaseModel):
    minute: str
    minute_ms: int
    counts: dict[str, int] = Field(
        description="dead letters per reason label: the field a rejection names, value, other"
    )


class Reject(BaseModel):
    reason: str = Field(description="why it was rejected, long IDs shortened")
    label: str
    partition: int | None = Field(description="the rejected record's partition")
    offset: int | None = Field(description="the rejected record's offset")
    rejected_at: str
    rejected_at_ms: int
    preview: str = Field(description="the head of the record's value, long IDs shortened")


class Rejects(BaseModel):
    """The dead-letter topic over the last hour: counts per minute and reason label, and the
    latest rejected records. ``reachable`` is false when the broker cannot be reached (then
    nothing else is known); ``caught_up`` false while a backlog is still being read."""

    model_config = example(
        {
            "dlq_topic": "transactions.dlq",
            "reachable": True,
            "caught_up": True,
            "by_minute": [
                {
                    "minute": "2026-12-07T05:00:00Z",
                    "minute_ms": 1796619600000,
                    "counts": {"Amount": 2, "value": 1},
                }
            ],
            "latest": [
                {
                    "reason": "Amount: Input should be greater than 0",
                    "label": "Amount",
                    "partition": 1,
                    "offset": 9812,
                    "rejected_at": "2026-12-07T05:00:12.345000Z",
                    "rejected_at_ms": 1796619612345,
                    "preview": '{"TransactionID": "3f9c1a2b…", "Amount": -5}',
                }
            ],
        }
    )

    dlq_topic: str
    reachable: bool
    caught_up: bool
    by_minute: list[RejectsMinute]
    latest: list[Reject]


class HistorySample(BaseModel):
    at_ms: int
    speed_watermark_ms: int | None
    landing_watermark_ms: int | None
    batch_horizon_ms: int | None
    lag: dict[str, int | None] = Field(description="partition -> lag (null: no broker)")


class Publish(BaseModel):
    version: str
    published_at_ms: int
    horizon_ms: int


class FreshnessHistory(BaseModel):
    """The last hour of the clocks /v1/freshness reports, sampled every ``sample_s`` by this
    serving worker (empty when sampling is off), and the batch publishes in that hour."""

    model_config = example(
        {
            "sample_s": 5.0,
            "samples": [
                {
                    "at_ms": 1796619645000,
                    "speed_watermark_ms": 1796619644500,
                    "landing_watermark_ms": 1796619642000,
                    "batch_horizon_ms": 1796619600000,
                    "lag": {"0": 0, "1": 12},
                }
            ],
            "publishes": [
                {
                    "version": VERSION_EXAMPLE,
                    "published_at_ms": 1796619641000,
                    "horizon_ms": 1796619600000,
                }
            ],
        }
    )

    sample_s: float
    samples: list[HistorySample]
    publishes: list[Publish]
