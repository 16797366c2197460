"""Reading a batch version's views from the store: the files its manifest names.

The batch layer's validation, serving and the tests all read a version this way, whichever
backend holds it: a reader never lists a version's prefix, it takes the files the manifest
names (a version's manifest is written last, so whatever it names is complete).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds

from lambda_contracts.layout import Layout
from lambda_contracts.views import View


class MissingVersion(LookupError):
    """No manifest: the version is unknown, or a job is still writing it."""


def view_files(layout: Layout, version: str, view_name: str) -> list[str]:
    """Keys of a view's Parquet files in a version, as its manifest names them."""
    manifest = layout.read_manifest(version)
    if manifest is None:
        raise MissingVersion(f"version {version} has no manifest (unknown or incomplete)")
    named = manifest.output_files
    if named is not None:
        return list(named.get(view_name, []))
    # Versions written before manifests named their files: complete, since their directory
    # was renamed into place whole. Listing is safe for them.
    prefix = layout.view_prefix(version, view_name)
    return [o.key for o in layout.store.list(prefix) if o.key.endswith(".parquet")]


def view_schema(view: View) -> pa.Schema:
    """The Arrow schema of a view's files (what the Spark job writes for it)."""
    return pa.schema(
        [(d, pa.string()) for d in view.dimensions]
        + [("window_start", pa.int64())]
        + [(m, pa.int64()) for m in view.measure_names]
    )


def view_dataset(layout: Layout, version: str, view: View) -> ds.Dataset:
    """A view of a version as an Arrow dataset: scanned lazily (DuckDB streams it), from
    whichever backend holds it; no files, no rows, same schema."""
    store = layout.store
    paths = [store.path(k) for k in view_files(layout, version, view.name)]
    return ds.dataset(
        paths, schema=view_schema(view), format="parquet", filesystem=store.filesystem()
    )


def read_view(layout: Layout, version: str, view: View) -> pa.Table:
    """A view of a version as one Arrow table."""
    return view_dataset(layout, version, view).to_table()
