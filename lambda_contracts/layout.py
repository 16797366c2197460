"""Where every layer keeps its data under the data directory, and how files are named.

    data/
      landing/bucket=<start_ms>/p<partition>-<first_offset>-<last_offset>.parquet
      landing/_progress/partition=<p>.json     landed offset and sealed-through time
      batch/versions/<version>/<view>/*.parquet   batch views of one run
      batch/versions/<version>/manifest.json
      batch/CURRENT                            the published version and its horizon
      speed/speed.db                           speed store (SQLite default)
      kafka/  airflow/  logs/  run/

A landing file is named by the offsets it holds, so writing it again after a crash replaces it
with the same content; overlapping files are possible after a crash and are harmless because
readers deduplicate by (partition, offset).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lambda_contracts.durable import read_json, write_json_atomic

if TYPE_CHECKING:
    from lambda_contracts.storage.base import ObjectStore

# Columns of a landing file, in order, with their logical types. Event columns are those of
# events.Transaction.to_row(); the kafka_* columns say where the record sits in the log.
LANDING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("transaction_id", "string"),
    ("created_time", "int64"),
    ("source_account_id", "string"),
    ("target_account_id", "string"),
    ("amount_cents", "int64"),
    ("kafka_partition", "int32"),
    ("kafka_offset", "int64"),
    ("kafka_ts", "int64"),
)

# Log order, the order of "first copy wins" in both layers' dedup: (Kafka timestamp, partition,
# offset). The timestamp is LogAppendTime, so within a partition this is offset order.
LOG_ORDER: tuple[str, ...] = ("kafka_ts", "kafka_partition", "kafka_offset")

LANDING_FILE = re.compile(r"^p(?P<partition>\d+)-(?P<first>\d+)-(?P<last>\d+)\.parquet$")
BUCKET_DIR = re.compile(r"^bucket=(?P<bucket>\d+)$")
CURRENT_KEY = "batch/CURRENT"  # the pointer object, moved only by compare-and-swap


def landing_file_range(path: Path) -> tuple[int, int, int] | None:
    """(partition, first offset, last offset) of a landing file's name; None for other files."""
    m = LANDING_FILE.match(path.name)
    return (int(m["partition"]), int(m["first"]), int(m["last"])) if m else None


def superseded_files(files: list[Path]) -> set[Path]:
    """Files of one bucket whose offset range lies inside another file's range (same
    partition): everything they hold is in that other file too."""
    covered: set[Path] = set()
    ranges = sorted(
        ((r, f) for f in files if (r := landing_file_range(f)) is not None),
        key=lambda item: (item[0][0], item[0][1], -item[0][2]),
    )
    reach: dict[int, int] = {}  # partition -> furthest last offset of the files so far
    for (partition, _first, last), path in ranges:
        if reach.get(partition, -1) >= last:
            covered.add(path)
        else:
            reach[partition] = last
    return covered


@dataclass(frozen=True)
class PartitionProgress:
    """How far one partition has been durably landed.

    ``next_offset``: every record below it is in a landing file.
    ``sealed_through_ms``: every record of this partition with Kafka timestamp below it is landed.
    """

    partition: int
    next_offset: int
    sealed_through_ms: int


def landing_watermark(progress: list[PartitionProgress | None], bucket_ms: int) -> int:
    """End of the newest bucket that every partition has completely landed (0 if none).

    A partition that has never reported progress holds the watermark at 0: a bucket is
    sealed only when all partitions, idle ones included, vouch for it.
    """
    if not progress or any(p is None for p in progress):
        return 0
    low = min(p.sealed_through_ms for p in progress if p is not None)
    return low - low % bucket_ms


@dataclass(frozen=True)
class BatchPointer:
    """The CURRENT batch version and the exclusive ingest horizon its views cover.

    ``pinned``: an operator rolled back to this version; no run publishes over it until
    ``lambda-batch resume``.
    """

    version: str
    horizon_ms: int
    published_at_ms: int
    pinned: bool = False


@dataclass(frozen=True)
class Layout:
    data_dir: Path

    # --- landing zone -------------------------------------------------------------------
    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def progress_dir(self) -> Path:
        return self.landing_dir / "_progress"

    def bucket_dir(self, bucket_ms: int) -> Path:
        return self.landing_dir / f"bucket={bucket_ms}"

    def landing_file(self, bucket_ms: int, partition: int, first: int, last: int) -> Path:
        return self.bucket_dir(bucket_ms) / f"p{partition}-{first}-{last}.parquet"

    def landed_buckets(self) -> list[int]:
        if not self.landing_dir.exists():
            return []
        found = (BUCKET_DIR.match(p.name) for p in self.landing_dir.iterdir() if p.is_dir())
        return sorted(int(m["bucket"]) for m in found if m)

    def landing_files(self, below_ms: int | None = None, from_ms: int = 0) -> list[Path]:
        """Landing files of buckets in [from_ms, below_ms), in bucket then name order.

        A file whose offset range another file of its bucket covers (a compacted file holds
        everything the small files it replaced held) is left out: readers see the old files
        or the compacted one, never both.
        """
        files: list[Path] = []
        for bucket in self.landed_buckets():
            if bucket < from_ms or (below_ms is not None and bucket >= below_ms):
                continue
            found = [p for p in self.bucket_dir(bucket).iterdir() if LANDING_FILE.match(p.name)]
            covered = superseded_files(found)
            files.extend(sorted(p for p in found if p not in covered))
        return files

    @property
    def landing_readers_lock(self) -> Path:
        """Held shared by jobs reading landing files, exclusively by compaction's deletes."""
        return self.landing_dir / ".readers.lock"

    def progress_file(self, partition: int) -> Path:
        return self.progress_dir / f"partition={partition}.json"

    def write_progress(self, progress: PartitionProgress) -> None:
        write_json_atomic(
            self.progress_file(progress.partition),
            {
                "partition": progress.partition,
                "next_offset": progress.next_offset,
                "sealed_through_ms": progress.sealed_through_ms,
            },
        )

    def read_progress(self, partition: int) -> PartitionProgress | None:
        raw = read_json(self.progress_file(partition))
        if raw is None:
            return None
        return PartitionProgress(raw["partition"], raw["next_offset"], raw["sealed_through_ms"])

    def read_all_progress(self, partitions: int) -> list[PartitionProgress | None]:
        """The progress of partitions 0..partitions-1 (None where none was recorded yet)."""
        return [self.read_progress(p) for p in range(partitions)]

    def landing_watermark(self, partitions: int, bucket_ms: int) -> int:
        """End of the newest bucket that every partition has completely landed (0 if none)."""
        return landing_watermark(self.read_all_progress(partitions), bucket_ms)

    # --- batch views --------------------------------------------------------------------
    @property
    def batch_dir(self) -> Path:
        return self.data_dir / "batch"

    @property
    def versions_dir(self) -> Path:
        return self.batch_dir / "versions"

    @property
    def current_file(self) -> Path:
        return self.data_dir / CURRENT_KEY

    def version_dir(self, version: str) -> Path:
        return self.versions_dir / version

    def view_dir(self, version: str, view_name: str) -> Path:
        return self.version_dir(version) / view_name

    def manifest_file(self, version: str) -> Path:
        return self.version_dir(version) / "manifest.json"

    def read_current(self) -> BatchPointer | None:
        return self.read_current_versioned()[0]

    def read_current_versioned(self) -> tuple[BatchPointer | None, str | None]:
        """CURRENT and its etag, the token a compare-and-swap of it must present."""
        found = self._pointer_store().get_versioned(CURRENT_KEY)
        if found is None:
            return None, None
        raw = json.loads(found.data)
        pointer = BatchPointer(
            raw["version"], raw["horizon_ms"], raw["published_at_ms"], raw.get("pinned", False)
        )
        return pointer, found.etag

    def swap_current(self, pointer: BatchPointer, expected_etag: str | None) -> bool:
        """Move CURRENT to ``pointer`` only if it is still what the caller read (etag
        ``expected_etag``; None: only if there is none). False when another publisher moved
        it first: two publishers can never both win, and a reader sees one whole pointer."""
        payload = {
            "version": pointer.version,
            "horizon_ms": pointer.horizon_ms,
            "published_at_ms": pointer.published_at_ms,
            "pinned": pointer.pinned,
        }
        data = json.dumps(payload, indent=1, sort_keys=True).encode()
        return self._pointer_store().cas(CURRENT_KEY, expected_etag, data) is not None

    def _pointer_store(self) -> ObjectStore:
        # Imported here: the storage package reads the settings, which read this module.
        from lambda_contracts.storage.local import LocalStore

        return LocalStore(self.data_dir)

    # --- services -----------------------------------------------------------------------
    @property
    def speed_dir(self) -> Path:
        return self.data_dir / "speed"

    @property
    def kafka_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def airflow_dir(self) -> Path:
        return self.data_dir / "airflow"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"
