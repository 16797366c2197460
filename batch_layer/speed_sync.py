"""What a publish means for the speed store: drift measurement and expiry of absorbed rows.

Readers already ignore speed rows below the published horizon, so expiry is cleanup only. The
drift is what the speed layer had counted for the buckets a run absorbed ([previous H, H))
against what batch computed for them; it is stored in ``batch_runs`` (before the publish, with
``published_at_ms`` 0 until it happened) and logged.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, MetaData, Table, delete, func, inspect, select, tuple_, update

from lambda_contracts.store_schema import batch_runs, view_tables, view_versions
from lambda_contracts.views import GLOBAL_MINUTE, VIEWS


def speed_totals(engine: Engine, from_bucket: int, below_bucket: int) -> tuple[int, int]:
    """(events, amount in cents) the speed layer counted in ingest buckets [from, below)."""
    table = view_tables[GLOBAL_MINUTE.name]
    with engine.connect() as conn:
        count, amount = conn.execute(
            select(
                func.coalesce(func.sum(table.c[GLOBAL_MINUTE.count_measure.name]), 0),
                func.coalesce(func.sum(table.c[GLOBAL_MINUTE.amount_measure.name]), 0),
            ).where(table.c.ingest_bucket >= from_bucket, table.c.ingest_bucket < below_bucket)
        ).one()
    return int(count), int(amount)


def record_run(
    engine: Engine,
    version: str,
    horizon_ms: int,
    previous_horizon_ms: int,
    published_at_ms: int,
    batch_events: int,
    batch_events_before: int,
    batch_amount: int,
    batch_amount_before: int,
) -> dict[str, Any]:
    """Store the run with the speed-vs-batch drift for the absorbed buckets."""
    speed_events, speed_amount = speed_totals(engine, previous_horizon_ms, horizon_ms)
    absorbed_events = batch_events - batch_events_before
    absorbed_amount = batch_amount - batch_amount_before
    report = {
        "version": version,
        "horizon_ms": horizon_ms,
        "previous_horizon_ms": previous_horizon_ms,
        "absorbed_events_batch": absorbed_events,
        "absorbed_events_speed": speed_events,
        "drift_events": absorbed_events - speed_events,
        "drift_cents": absorbed_amount - speed_amount,
    }
    with engine.begin() as conn:
        conn.execute(delete(batch_runs).where(batch_runs.c.version == version))
        conn.execute(
            batch_runs.insert().values(
                version=version,
                horizon_ms=horizon_ms,
                previous_horizon_ms=previous_horizon_ms,
                published_at_ms=published_at_ms,
                batch_events=batch_events,
                speed_events=speed_events,
                drift_events=report["drift_events"],
                drift_cents=report["drift_cents"],
                report=json.dumps(report),
            )
        )
    return report


def mark_published(engine: Engine, version: str, published_at_ms: int) -> None:
    """The run recorded before its publish happened: CURRENT names it since then."""
    with engine.begin() as conn:
        conn.execute(
            update(batch_runs)
            .where(batch_runs.c.version == version)
            .values(published_at_ms=published_at_ms)
        )


def discard_run(engine: Engine, version: str) -> None:
    """Drop the record of a run whose publish was refused (it absorbed nothing)."""
    with engine.begin() as conn:
        conn.execute(delete(batch_runs).where(batch_runs.c.version == version))


def stored_report(engine: Engine, version: str) -> dict[str, Any] | None:
    """The report recorded when ``version`` was published, if it was."""
    with engine.connect() as conn:
        raw = conn.execute(select(batch_runs.c.report).where(batch_runs.c.version == version))
        row = raw.first()
    return json.loads(row[0]) if row else None


def declared_tables(engine: Engine) -> list[Table]:
    """The speed tables of every declared view version deployed to the store (retired ones
    too, while they exist), read from the database: the views file in force may differ."""
    with engine.connect() as conn:
        names = [
            name
            for (listed,) in conn.execute(select(view_versions.c.tables))
            for name in json.loads(listed)
        ]
    meta = MetaData()
    found = set(inspect(engine).get_table_names())
    return [Table(name, meta, autoload_with=engine) for name in names if name in found]


EXPIRY_CHUNK_ROWS = 5_000


def expire_speed_rows(engine: Engine, horizon_ms: int, chunk_rows: int = EXPIRY_CHUNK_ROWS) -> int:
    """Delete speed rows that the published batch version already covers.

    In transactions of at most ``chunk_rows`` rows each: one DELETE of a million-event
    increment's rows would hold the store's write lock (SQLite: the whole file) for seconds,
    and the speed layer's commits, hence its freshness, would wait behind it. Readers never
    see a half-expired view: they ignore rows below the published horizon anyway.
    """
    deleted = 0
    for table in (*(view_tables[v.name] for v in VIEWS), *declared_tables(engine)):
        key = tuple_(*table.primary_key.columns)
        doomed = (
            select(*table.primary_key.columns)
            .where(table.c.ingest_bucket < horizon_ms)
            .limit(chunk_rows)
        )
        while True:
            with engine.begin() as conn:
                count = conn.execute(delete(table).where(key.in_(doomed))).rowcount
            deleted += count
            if count < chunk_rows:
                break
    return deleted
