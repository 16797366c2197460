"""Writing batch versions for tests the way the Spark job does: files first, manifest last."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from lambda_contracts.landing_files import put_parquet
from lambda_contracts.layout import Layout
from lambda_contracts.manifest import Manifest
from lambda_contracts.views import VIEWS


def put_version(
    layout: Layout, version: str, tables: dict[str, pa.Table], manifest: dict[str, Any]
) -> None:
    """One Parquet file per view under the version's prefix, then the manifest naming them."""
    outputs: dict[str, list[str]] = {}
    for view_name, table in tables.items():
        key = f"{layout.view_prefix(version, view_name)}part-0.parquet"
        put_parquet(layout, key, table)
        outputs[view_name] = [key]
    layout.write_manifest(version, Manifest.model_validate({**manifest, "output_files": outputs}))


def put_counted_version(
    layout: Layout,
    version: str,
    horizon: int,
    bucket_ms: int,
    events: int,
    view_events: int,
    **manifest: Any,
) -> str:
    """A complete version of one row per view whose views count ``view_events`` events of
    the ``events`` its manifest says it read (validation passes iff the two are equal)."""
    tables = {}
    for view in VIEWS:
        columns: dict[str, list[object]] = {d: ["acct"] for d in view.dimensions}
        columns["window_start"] = [60_000]
        measures = (view_events, 10 * view_events, 10, 10)
        named = dict(zip(view.measure_names, measures, strict=True))
        tables[view.name] = pa.table(columns | {k: [v] for k, v in named.items()})
    counts = {
        "version": version,
        "horizon_ms": horizon,
        "bucket_ms": bucket_ms,
        "input_records": events,
        "records_read": events,
        "replays_removed": 0,
        "duplicates_removed": 0,
        "events": events,
    }
    put_version(layout, version, tables, counts | manifest)
    return version


BUCKET = 1000  # the ingest bucket of hand-written versions (ms)


def make_version(layout: Layout, name: str, horizon: int, events: int, view_events: int) -> str:
    """A complete version whose views count ``view_events`` (valid iff it equals ``events``)."""
    version = f"v20260101T0000{name}Z-{name}"
    return put_counted_version(layout, version, horizon, BUCKET, events, view_events)


def validated(layout: Layout, name: str, horizon: int) -> str:
    """A version of five events, validated (so it may be published or rolled back to)."""
    from batch_layer.validate import validate_version

    version = make_version(layout, name, horizon, 5, 5)
    validate_version(layout, version)
    return version
