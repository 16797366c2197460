"""Declared views in a PostgreSQL speed store equal the reference, as on SQLite
(``tests/unit/test_speed_declared_views.py``): random logs with duplicates and replays, random
declarations (dimensions, windows, distinct counts, amount filters)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete

from lambda_contracts.db import make_engine
from lambda_contracts.declared_views import DeclaredView
from lambda_contracts.store_schema import ViewTables, dedup, view_versions
from lambda_contracts.view_declarations import ViewDeclaration
from lambda_contracts.view_set import ViewSet
from speed_layer.store import SpeedStore
from tests.support.declared import declarations
from tests.support.services import Postgres
from tests.support.speed_store import BUCKET_MS, assert_declared_equal_reference
from tests.support.streams import Record, partitioned_logs

pytestmark = [pytest.mark.integration]

DEDUP_MS = 1500  # small against the logs' time span, as on SQLite


@pytest.fixture(scope="module")
def engine(postgres: Postgres) -> Iterator[Engine]:
    engine = make_engine(postgres.new_database())
    yield engine
    engine.dispose()


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    logs=partitioned_logs(max_skew_ms=3 * DEDUP_MS, gap_unit_ms=100),
    declaration=declarations(),
    data=st.data(),
)
def test_declared_views_on_postgres_equal_the_reference(
    engine: Engine, logs: dict[int, list[Record]], declaration: ViewDeclaration, data: st.DataObject
) -> None:
    declared = DeclaredView.of(declaration)
    views = ViewSet((declared,))
    store = SpeedStore(engine, f"tx-{uuid.uuid4().hex[:8]}", BUCKET_MS, DEDUP_MS, views)
    try:
        assert_declared_equal_reference(store, declared, logs, data, DEDUP_MS)
    finally:  # the next example (same ids, maybe the same version) starts from nothing
        ViewTables(views.computed).declared.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(delete(view_versions))
            conn.execute(delete(dedup))
