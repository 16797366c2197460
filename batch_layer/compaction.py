"""Compaction of sealed landing buckets: one file per (bucket, partition), nothing lost.

The speed layer lands a file per partition every couple of seconds, so a day at the demo rate
is thousands of small files that every batch run would list and open. Once a bucket is sealed
and below the published horizon, nothing new can land in it, and its files per partition are
rewritten as one file named by its offset range, like every landing file.

Crash safety at every step, without locks between writers and readers:

1. the compacted file is written durably (one whole-object put under its final key);
2. from then on ``Layout.landing_files`` leaves out the files whose offset range it covers
   (``superseded_files``), so a reader sees the old files or the compacted one, never both;
3. the small files are deleted last, and only those no kept batch version's manifest names
   and no running job may be reading (``lambda_contracts.landing_lock``: a job holds it shared;
   deletion needs it exclusively and is skipped, for a later run, while a job runs).

A kill at any point leaves a state that reads the same rows; the next run completes the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from batch_layer.catalog import list_versions, read_manifest
from batch_layer.inputs import spark_uri
from lambda_contracts.landing_files import read_landing_files, write_landing_table
from lambda_contracts.landing_lock import deleting_landing
from lambda_contracts.layout import Layout, landing_file_range, superseded_files

log = structlog.get_logger("compaction")

# Steps at which a test may interrupt a run (as a kill -9 would), in order.
STEPS = ("before_write", "after_write", "before_delete")


@dataclass
class CompactionReport:
    buckets: int = 0
    files_before: int = 0
    files_after: int = 0
    compacted: list[str] = field(default_factory=list)  # keys written
    deleted: int = 0
    kept_for_readers: int = 0  # superseded files still named by a kept version or a job


def compact(
    layout: Layout, below_ms: int, fault: Callable[[str], None] = lambda step: None
) -> CompactionReport:
    """Compact every landed bucket that starts below ``below_ms`` (the published horizon:
    those buckets are sealed), then delete the superseded files no reader needs."""
    report = CompactionReport()
    for bucket, keys in layout.landing_keys_by_bucket(below_ms=below_ms).items():
        report.buckets += 1
        report.files_before += len(keys)
        for partition, group in _by_partition(keys).items():
            live = [k for k in group if k not in superseded_files(group)]
            if len(live) > 1:
                fault("before_write")
                target = _merge(layout, bucket, partition, live)
                fault("after_write")
                report.compacted.append(target)
                live = [target]
            report.files_after += len(live)
    fault("before_delete")
    _delete_superseded(layout, below_ms, report)
    log.info("compacted", **report.__dict__ | {"compacted": len(report.compacted)})
    return report


def _by_partition(keys: list[str]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for key in keys:
        partition, _, _ = landing_file_range(key)  # type: ignore[misc]
        groups.setdefault(partition, []).append(key)
    return groups


def _merge(layout: Layout, bucket: int, partition: int, keys: list[str]) -> str:
    """One file with every offset of ``keys`` once, in offset order, written durably."""
    table = read_landing_files(layout, keys)
    table = table.sort_by("kafka_offset")
    offsets = table.column("kafka_offset")
    # Overlapping files (a replay after a crash) hold the same row twice: keep one.
    keep = pc.not_equal(offsets.slice(1), offsets.slice(0, len(offsets) - 1))
    mask = pa.concat_arrays([pa.array([True]), keep.combine_chunks()])
    return write_landing_table(layout, bucket, partition, table.filter(mask))


def _delete_superseded(layout: Layout, below_ms: int, report: CompactionReport) -> None:
    needed = _named_by_kept_versions(layout)
    with deleting_landing(layout) as allowed:
        for keys in layout.landing_keys_by_bucket(below_ms=below_ms).values():
            for old in sorted(superseded_files(keys)):
                if not allowed or spark_uri(layout, old) in needed:
                    report.kept_for_readers += 1
                    continue
                layout.store.delete(old)
                report.deleted += 1


def _named_by_kept_versions(layout: Layout) -> set[str]:
    names: set[str] = set()
    for version in list_versions(layout):
        try:
            names.update(read_manifest(layout, version).input_files)
        except (FileNotFoundError, ValueError):
            continue
    return names
