"""Expiry of absorbed speed rows: exactly the rows below the horizon go, in small transactions."""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import event, insert, select

from batch_layer.speed_sync import expire_speed_rows
from lambda_contracts.db import make_engine
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import view_tables
from lambda_contracts.views import VIEWS

BUCKET = 60_000
CHUNK = 97


def test_expiry_deletes_every_row_below_the_horizon_and_no_other(
    store_url: str | None, tmp_path: Path
) -> None:
    engine = make_engine(Settings(data_dir=tmp_path, speed_store_url=store_url).speed_store_url)
    rng = random.Random(3)
    written: dict[str, list[dict[str, object]]] = {}
    with engine.begin() as conn:
        for view in VIEWS:
            rows: dict[tuple[object, ...], dict[str, object]] = {}
            for i in range(1_000):
                row: dict[str, object] = {d: f"a{i % 37}" for d in view.dimensions}
                row["window_start"] = 60_000 * rng.randrange(50)
                row["ingest_bucket"] = BUCKET * rng.randrange(8)
                row |= dict(zip(view.measure_names, (1, 100, 100, 100), strict=True))
                rows[tuple(row[c.name] for c in view_tables[view.name].primary_key)] = row
            conn.execute(insert(view_tables[view.name]), list(rows.values()))
            written[view.name] = list(rows.values())
    horizon = 5 * BUCKET
    commits = 0

    def counted(*_: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine, "commit", counted)
    deleted = expire_speed_rows(engine, horizon, chunk_rows=CHUNK)
    gone = 0
    with engine.connect() as conn:
        for view in VIEWS:
            table = view_tables[view.name]
            key = [c.name for c in table.primary_key]
            left = {tuple(r) for r in conn.execute(select(*(table.c[c] for c in key)))}
            wanted = set()
            for row in written[view.name]:
                if row["ingest_bucket"] >= horizon:
                    wanted.add(tuple(row[c] for c in key))
                else:
                    gone += 1
            assert left == wanted, view.name
    assert deleted == gone > 3 * CHUNK
    assert commits >= gone / CHUNK  # no transaction deleted more than a chunk
    engine.dispose()
