"""Serving's speed reads on both store backends: the compiled statements, run on DBAPI
connections, return what a plain loop over the stored rows says."""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import insert

from lambda_contracts.db import make_engine
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import view_tables
from lambda_contracts.views import ACCOUNT_MINUTE, GLOBAL_MINUTE
from serving.row_query import RowQuery
from serving.speed_store import SpeedReader

BUCKET = 60_000


def test_speed_rows_match_a_plain_loop(store_url: str | None, tmp_path: Path) -> None:
    engine = make_engine(Settings(data_dir=tmp_path, speed_store_url=store_url).speed_store_url)
    rng = random.Random(11)
    stored: dict[tuple[str, int, int], list[int]] = {}
    for _ in range(2_000):
        key = (f"acct-{rng.randrange(5)}", 60_000 * rng.randrange(30), BUCKET * rng.randrange(6))
        cents = rng.randrange(1, 10**12)  # beyond 32 bits: sums must stay exact integers
        m = stored.setdefault(key, [0, 0, cents, cents])
        m[0] += 1
        m[1] += cents
        m[2], m[3] = min(m[2], cents), max(m[3], cents)
    with engine.begin() as conn:
        conn.execute(
            insert(view_tables[ACCOUNT_MINUTE.name]),
            [
                dict(zip(("source_account_id", "window_start", "ingest_bucket"), k, strict=True))
                | dict(zip(ACCOUNT_MINUTE.measure_names, m, strict=True))
                for k, m in stored.items()
            ],
        )
    reader = SpeedReader(engine, "t")
    for _ in range(40):
        horizon = BUCKET * rng.randrange(7)
        start = 60_000 * rng.randrange(30)
        end = start + 60_000 * rng.randrange(1, 30)
        account = f"acct-{rng.randrange(6)}"  # acct-5 has no rows
        want: dict[tuple, list[int]] = {}
        for (a, window, bucket), m in stored.items():
            if a != account or bucket < horizon or not start <= window < end:
                continue
            w = want.setdefault((window,), [0, 0, m[2], m[3]])
            w[0] += m[0]
            w[1] += m[1]
            w[2], w[3] = min(w[2], m[2]), max(w[3], m[3])
        q = RowQuery.of(
            ACCOUNT_MINUTE, start, end, ("window_start",), {"source_account_id": account}
        )
        got = {k: list(v) for k, v in reader.rows(q, horizon)}
        assert got == want
        total = RowQuery.of(ACCOUNT_MINUTE, start, end, (), {"source_account_id": account})
        rows = reader.rows(total, horizon)
        if want:
            count = sum(v[0] for v in want.values())
            assert rows[0][1][:2] == (count, sum(v[1] for v in want.values()))
        else:
            assert rows == []
    assert reader.rows(RowQuery.of(GLOBAL_MINUTE, 0, 10**13, ()), 0) == []  # an empty view
    engine.dispose()
