"""Writing batch versions for tests the way the Spark job does: files first, manifest last."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from lambda_contracts.landing_files import put_parquet
from lambda_contracts.layout import Layout


def put_version(
    layout: Layout, version: str, tables: dict[str, pa.Table], manifest: dict[str, Any]
) -> None:
    """One Parquet file per view under the version's prefix, then the manifest naming them."""
    outputs: dict[str, list[str]] = {}
    for view_name, table in tables.items():
        key = f"{layout.view_prefix(version, view_name)}part-0.parquet"
        put_parquet(layout, key, table)
        outputs[view_name] = [key]
    layout.write_manifest(version, {**manifest, "output_files": outputs})
