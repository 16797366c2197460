"""Laws of declared views on real Spark: for random declarations and a random landing zone (late
events, exact and conflicting duplicates, several partitions and buckets), each declared view
the Spark job writes, combined by ``DeclaredView.answer``, equals the plain reference
(``tests/support/declared.py``) over the events the dedup rule keeps (``tests/support/oracle``'s
plain loop).

Each example is one ``spark-submit`` of every drawn view at once, so the examples are few and
each draws several views.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from batch_layer.pipeline import recompute
from lambda_contracts.batch_files import view_files
from lambda_contracts.declared_views import DeclaredView
from lambda_contracts.landing_files import LANDING_SCHEMA, write_landing_table
from lambda_contracts.layout import Layout, PartitionProgress
from lambda_contracts.settings import Settings
from lambda_contracts.view_declarations import ViewDeclaration
from lambda_contracts.views import View, keyed
from tests.support.declared import COLUMNS, WINDOW_MS, declarations, reference
from tests.support.oracle import kept_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET_MS = 60_000
PARTITIONS = 2
START = 1_795_000_000_000

event = st.fixed_dictionaries(
    {
        "created_time": st.integers(0, 3 * 86_400_000),
        "source_account_id": st.sampled_from(["a", "b", "c"]),
        "target_account_id": st.sampled_from(["a", "x", "y", "z"]),
        "amount_cents": st.sampled_from([0, 1, 499, 500, 1250, 2000, 4999, 5000]),
        "partition": st.integers(0, PARTITIONS - 1),
        "gap_ms": st.integers(0, 40_000),  # Kafka time since the partition's previous record
        "copy_of": st.none() | st.integers(0, 400),  # repeats an earlier id (if any)
    }
)


def toml(declaration: ViewDeclaration, name: str) -> str:
    lines = [
        "[[views]]",
        f'name = "{name}"',
        f"dimensions = [{', '.join(repr(d) for d in declaration.dimensions)}]",
        f'window = "{declaration.window}"',
        f"measures = [{', '.join(repr(m) for m in declaration.measures)}]",
    ]
    if declaration.amount_min is not None:
        lines.append(f'amount_min = "{declaration.amount_min}"')
    if declaration.amount_max is not None:
        lines.append(f'amount_max = "{declaration.amount_max}"')
    return "\n".join(lines).replace("'", '"') + "\n"


def landed(drawn: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The drawn events placed in the log: offsets and Kafka times per partition, an id each
    (or an earlier one's: a copy with fields of its own, or the very same event)."""
    rows: list[dict[str, Any]] = []
    clocks = [START] * PARTITIONS
    for i, e in enumerate(drawn):
        p = e["partition"]
        clocks[p] += e["gap_ms"]
        row = {c: e[c] for c in ("source_account_id", "target_account_id", "amount_cents")}
        row["created_time"] = START - 86_400_000 + e["created_time"]  # late ones too
        row["transaction_id"] = f"t{i}"
        if e["copy_of"] is not None and e["copy_of"] < i:
            row["transaction_id"] = rows[e["copy_of"]]["transaction_id"]
        elif i % 9 == 8:  # duplicates in every example, however small the draw
            row["transaction_id"] = rows[i // 2]["transaction_id"]
        elif i % 13 == 12:  # the very same event again
            row = {k: rows[i - 5][k] for k in (*row, "transaction_id")}
        offset = sum(1 for r in rows if r["kafka_partition"] == p)
        rows.append({**row, "kafka_partition": p, "kafka_offset": offset, "kafka_ts": clocks[p]})
    return rows


def write_zone(layout: Layout, rows: list[dict[str, Any]]) -> int:
    """The rows as landing files, a file per (partition, bucket); returns the horizon above
    every record."""
    top = START
    for p in range(PARTITIONS):
        mine = [r for r in rows if r["kafka_partition"] == p]
        buckets: dict[int, list[dict[str, Any]]] = {}
        for r in mine:
            buckets.setdefault(r["kafka_ts"] - r["kafka_ts"] % BUCKET_MS, []).append(r)
        for bucket, members in buckets.items():
            write_landing_table(layout, bucket, p, pa.Table.from_pylist(members, LANDING_SCHEMA))
        end = max((r["kafka_ts"] for r in mine), default=START)
        top = max(top, end)
        layout.write_progress(PartitionProgress(p, len(mine), end - end % BUCKET_MS + BUCKET_MS))
    return top - top % BUCKET_MS + BUCKET_MS


def read_view(layout: Layout, version: str, view: View) -> list:
    files = [layout.store.path(k) for k in view_files(layout, version, view.name)]
    if not files:
        return []
    cols = ", ".join([*view.key_columns, *view.measure_names])
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT {cols} FROM read_parquet(?)", [files]).fetchall()
    return keyed(rows, len(view.key_columns))


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    phases=(Phase.generate,),  # no shrinking: each example is a spark-submit
)
@given(
    drawn_views=st.lists(declarations(), min_size=3, max_size=6),
    drawn=st.lists(event, min_size=150, max_size=400),
)
def test_spark_computes_declared_views_like_the_reference(
    tmp_path_factory: pytest.TempPathFactory,
    drawn_views: list[ViewDeclaration],
    drawn: list[dict[str, Any]],
) -> None:
    tmp = tmp_path_factory.mktemp("spark-laws")
    names = [f"v{i}" for i in range(len(drawn_views))]
    views_file = tmp / "views.toml"
    views_file.write_text("\n".join(toml(d, n) for d, n in zip(drawn_views, names, strict=True)))
    config = Settings(data_dir=tmp / "data", bucket_ms=BUCKET_MS, views_file=views_file)
    layout = Layout.of(config)
    rows = landed(drawn)
    horizon = write_zone(layout, rows)
    recompute(config, horizon, "laws", "laws", full=True)
    kept = kept_rows(rows)  # every copy lies well within the 24 h dedup horizon
    assert len(kept) < len(rows)  # the dedup is exercised
    for declaration, name in zip(drawn_views, names, strict=True):
        declared = DeclaredView.of(declaration.model_copy(update={"name": name}))
        totals = read_view(layout, "laws", declared.totals)
        sets = {
            s.label: [key for key, _ in read_view(layout, "laws", s.view)] for s in declared.sets
        }
        dims = tuple(sorted(declaration.dimensions))
        window_ms = WINDOW_MS[declaration.window]
        stored = declared.answer(totals, sets, tuple(COLUMNS[d] for d in dims), window_ms)
        assert stored == reference(declaration, kept, dims, window_ms), name
        assert declared.answer(totals, sets) == reference(declaration, kept, (), None), name
