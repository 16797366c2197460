"""A batch view as sorted arrays answers per key exactly what a plain loop over its rows does,
also for a view with no rows (an early version, or a window with no events)."""

from __future__ import annotations

import duckdb
import pytest

from lambda_contracts.views import ACCOUNT_MINUTE, GLOBAL_MINUTE, View
from serving.key_index import KeyedArrays


def table(con: duckdb.DuckDBPyConnection, view: View, rows: list[tuple]) -> str:
    name = f"t_{view.name}"
    columns = [*(f"{d} VARCHAR" for d in view.dimensions), "window_start BIGINT"]
    columns += [f"{m} BIGINT" for m in view.measure_names]
    con.execute(f"CREATE TABLE {name} ({', '.join(columns)})")
    if rows:
        marks = ", ".join("?" * len(columns))
        con.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
    return name


@pytest.mark.parametrize("view", [ACCOUNT_MINUTE, GLOBAL_MINUTE], ids=lambda v: v.name)
def test_a_view_with_no_rows_answers_nothing(view: View) -> None:
    con = duckdb.connect()
    arrays = KeyedArrays.load(con, table(con, view, []), view)
    key = ("a",) if view.dimensions else ()
    assert arrays.rows(key, 0, 1 << 62, False, None) == []


def test_each_account_gets_exactly_its_rows() -> None:
    view = ACCOUNT_MINUTE
    rows = [
        (account, minute * 60_000, count, count * 100, 100, 100)
        for account, minutes in (("b", 3), ("a", 2), ("c", 1))
        for minute, count in zip(range(minutes), (1, 2, 3), strict=False)
    ]
    con = duckdb.connect()
    arrays = KeyedArrays.load(con, table(con, view, rows), view)
    for account in ("a", "b", "c", "zz"):
        mine = [r for r in rows if r[0] == account and 60_000 <= r[1] < 180_000]
        want = [((), (sum(r[2] for r in mine), sum(r[3] for r in mine), 100, 100))] if mine else []
        assert arrays.rows((account,), 60_000, 180_000, False, None) == want


def test_the_api_answers_over_a_published_version_with_no_events(tmp_path) -> None:
    """The first batch run may publish a horizon before any event: serving loads it and
    answers (it answered 500 while every load of it failed)."""
    from fastapi.testclient import TestClient

    from lambda_contracts.batch_files import view_schema
    from lambda_contracts.layout import BatchPointer, Layout
    from lambda_contracts.settings import Settings
    from serving.main import create_app
    from tests.support.versions import put_version

    settings = Settings(data_dir=tmp_path, partitions=1, bucket_ms=60_000)
    layout = Layout.of(settings)
    version = "v20260101T000000Z-empty"
    tables = {v.name: view_schema(v).empty_table() for v in (ACCOUNT_MINUTE, GLOBAL_MINUTE)}
    counts = dict.fromkeys(("input_records", "records_read", "replays_removed"), 0)
    counts |= {"duplicates_removed": 0, "events": 0}
    manifest = {"version": version, "horizon_ms": 120_000, "bucket_ms": 60_000, **counts}
    put_version(layout, version, tables, manifest)
    assert layout.swap_current(BatchPointer(version, 120_000, 1), None)
    with TestClient(create_app(settings)) as client:
        answer = client.get("/v1/totals", params={"start": 0, "end": 10**12})
        assert answer.status_code == 200, answer.text
        assert answer.json()["count"] == 0 and answer.json()["meta"]["batch_version"] == version
        account = client.get("/v1/accounts/a/summary", params={"start": 0, "end": 10**12})
        assert account.status_code == 200 and account.json()["count"] == 0
