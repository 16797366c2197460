"""Where every layer keeps its data, and how objects and files are named.

    store (LAMBDA_STORAGE_URL: the data directory by default, or s3://bucket/prefix):
      landing/bucket=<start_ms>/p<partition>-<first_offset>-<last_offset>.parquet
      landing/_progress/partition=<p>.json     landed offset and sealed-through time
      batch/versions/<version>/<view>/hour=<ms>/*.parquet   a view's rows of one
                                               event-time hour (day=<ms> for a view with no
                                               dimension); a version may name another
                                               version's files for the periods it left alone
      batch/versions/<version>/dedup-index/*.parquet   TransactionIDs kept in the last D
      batch/versions/<version>/manifest.json   written last: names the version's files
      batch/CURRENT                            the published version and its horizon (CAS)
    data/
      speed/speed.db                           speed store (SQLite default)
      kafka/  airflow/  logs/  run/

A landing file is named by the offsets it holds, so writing it again after a crash replaces it
with the same content; overlapping files are possible after a crash and are harmless because
readers deduplicate by (partition, offset).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, TypeVar

from lambda_contracts.manifest import Manifest

if TYPE_CHECKING:
    from lambda_contracts.settings import Settings
    from lambda_contracts.storage.base import ObjectStore
    from lambda_contracts.views import View

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

LANDING_FILE = re.compile(r"^p(?P<partition>\d+)-(?P<first>\d+)-(?P<last>\d+)\.parquet$")
BUCKET_DIR = re.compile(r"^bucket=(?P<bucket>\d+)$")
LANDING_PREFIX = "landing/"
BUCKETS_PREFIX = "landing/bucket="
PROGRESS_PREFIX = "landing/_progress/"
VERSIONS_PREFIX = "batch/versions/"
MANIFEST_NAME = "manifest.json"
CURRENT_KEY = "batch/CURRENT"  # the pointer object, moved only by compare-and-swap
# Batch views are partitioned by event-time period (of window_start), a directory per period:
# an incremental run rewrites only the periods its new events fall in. A view keyed by a
# dimension (an account) has up to a row per event, and is partitioned by hour, so that an
# event late by an hour rewrites an hour of history, not a day of it; a view with no dimension
# has 1,440 rows a day and is partitioned by day (an hour would be a file of 60 rows); so is a
# view whose window is a day (a period holds whole windows).
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
VIEW_PARTITION_DIR = re.compile(r"/(?P<period>hour|day)=(?P<start>-?\d+)/")


@dataclass(frozen=True)
class ViewPartitioning:
    """How a view's files are partitioned: the period's directory name and length."""

    column: str  # "hour" or "day": the directory is <column>=<start in ms>
    span_ms: int

    def start(self, ms: int) -> int:
        """The start of the period a time in ms falls in."""
        return ms - ms % self.span_ms


def view_partitioning(view: View) -> ViewPartitioning:
    """A view's partitioning (see above); every view's window divides its period."""
    by_hour = view.dimensions and view.window_ms <= HOUR_MS
    found = ViewPartitioning("hour", HOUR_MS) if by_hour else ViewPartitioning("day", DAY_MS)
    assert found.span_ms % view.window_ms == 0, f"{view.name}: window must divide a partition"
    return found


DEDUP_INDEX_DIR = "dedup-index"

# A landing file's key, or a local path to one: both end in its name.
K = TypeVar("K", str, PurePath)


def _name(key: str | PurePath) -> str:
    return key.name if isinstance(key, PurePath) else key.rpartition("/")[2]


def landing_file_range(key: str | PurePath) -> tuple[int, int, int] | None:
    """(partition, first offset, last offset) of a landing file's key (or path); None for
    other objects."""
    m = LANDING_FILE.match(_name(key))
    return (int(m["partition"]), int(m["first"]), int(m["last"])) if m else None


def landing_key_bucket(key: str) -> int | None:
    """The bucket of a landing file's key (``landing/bucket=<ms>/<file>``); None otherwise."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "landing" or landing_file_range(parts[2]) is None:
        return None
    m = BUCKET_DIR.match(parts[1])
    return int(m["bucket"]) if m else None


def superseded_files(files: Sequence[K]) -> set[K]:
    """Files of one bucket whose offset range lies inside another file's range (same
    partition): everything they hold is in that other file too."""
    covered: set[K] = set()
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
    """Where the platform keeps its data.

    The master dataset (landing files and progress) and the batch layer's output (versions,
    their manifests, ``CURRENT``) live in ``store``, the storage contract's backend: the local
    data directory by default, an S3 bucket when ``LAMBDA_STORAGE_URL`` says so
    (``Layout.of(settings)``). Objects are named by keys, never by local paths; Parquet is
    read through ``store.filesystem()`` and ``store.path(key)``. Services' own state (Kafka,
    Airflow, pid files, the SQLite store) stays in ``data_dir``.
    """

    data_dir: Path
    store: ObjectStore = field(default=None, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.store is None:
            # Imported here: the storage package reads the settings, which read this module.
            from lambda_contracts.storage.local import LocalStore

            object.__setattr__(self, "store", LocalStore(self.data_dir))

    @classmethod
    def of(cls, settings: Settings) -> Layout:
        """The layout the settings configure: their data directory and storage backend."""
        from lambda_contracts.storage import open_store

        return cls(settings.data_dir, open_store(settings))

    # --- landing zone -------------------------------------------------------------------
    @property
    def landing_dir(self) -> Path:
        """The landing zone's local directory: where the default backend keeps its objects,
        and where the readers' lock lives on every backend."""
        return self.data_dir / "landing"

    def landing_key(self, bucket_ms: int, partition: int, first: int, last: int) -> str:
        return f"{BUCKETS_PREFIX}{bucket_ms}/p{partition}-{first}-{last}.parquet"

    def landed_buckets(self) -> list[int]:
        """Every bucket with landed files, in order: a listing of the buckets, not their files
        (on S3 one delimited LIST, a page per thousand buckets)."""
        buckets = []
        for directory in self.store.list_dirs(LANDING_PREFIX):
            m = BUCKET_DIR.match(directory[len(LANDING_PREFIX) : -1])
            if m:
                buckets.append(int(m["bucket"]))
        return sorted(buckets)

    def landing_keys_by_bucket(
        self, from_ms: int = 0, below_ms: int | None = None
    ) -> dict[int, list[str]]:
        """The landing files' keys (superseded ones too) of the buckets in [from_ms, below_ms),
        by bucket, in bucket then key order.

        A range holding most of the landed buckets is one listing of the whole landing zone;
        a smaller one (an increment, one bucket) lists only its own buckets, so what a run
        lists grows with what it reads, not with the history kept.
        """

        def in_range(bucket: int) -> bool:
            return from_ms <= bucket and (below_ms is None or bucket < below_ms)

        landed = self.landed_buckets()
        wanted = [b for b in landed if in_range(b)]
        if 2 * len(wanted) > len(landed):
            infos = self.store.list(BUCKETS_PREFIX)
        else:
            infos = [i for b in wanted for i in self.store.list(f"{BUCKETS_PREFIX}{b}/")]
        found: dict[int, list[str]] = {}
        for info in infos:
            bucket = landing_key_bucket(info.key)
            if bucket is not None and in_range(bucket):
                found.setdefault(bucket, []).append(info.key)
        return dict(sorted(found.items()))

    def landing_files(self, below_ms: int | None = None, from_ms: int = 0) -> list[str]:
        """Keys of the landing files of buckets in [from_ms, below_ms), in bucket then key order.

        A file whose offset range another file of its bucket covers (a compacted file holds
        everything the small files it replaced held) is left out: readers see the old files
        or the compacted one, never both.
        """
        keys: list[str] = []
        for found in self.landing_keys_by_bucket(from_ms, below_ms).values():
            covered = superseded_files(found)
            keys.extend(k for k in found if k not in covered)
        return keys

    def progress_key(self, partition: int) -> str:
        return f"{PROGRESS_PREFIX}partition={partition}.json"

    def write_progress(self, progress: PartitionProgress) -> None:
        """Record a partition's progress, after the landing files it vouches for are durable:
        a whole-object put, so no crash leaves it ahead of them or torn."""
        payload = {
            "partition": progress.partition,
            "next_offset": progress.next_offset,
            "sealed_through_ms": progress.sealed_through_ms,
        }
        data = json.dumps(payload, indent=1, sort_keys=True).encode()
        self.store.put(self.progress_key(progress.partition), data)

    def read_progress(self, partition: int) -> PartitionProgress | None:
        found = self.store.get_versioned(self.progress_key(partition))
        if found is None:
            return None
        raw = json.loads(found.data)
        return PartitionProgress(raw["partition"], raw["next_offset"], raw["sealed_through_ms"])

    def read_all_progress(self, partitions: int) -> list[PartitionProgress | None]:
        """The progress of partitions 0..partitions-1 (None where none was recorded yet)."""
        return [self.read_progress(p) for p in range(partitions)]

    def landing_watermark(self, partitions: int, bucket_ms: int) -> int:
        """End of the newest bucket that every partition has completely landed (0 if none)."""
        return landing_watermark(self.read_all_progress(partitions), bucket_ms)

    # --- batch views (objects in the store) ----------------------------------------------
    def version_prefix(self, version: str) -> str:
        return f"{VERSIONS_PREFIX}{version}/"

    def view_prefix(self, version: str, view_name: str) -> str:
        return f"{VERSIONS_PREFIX}{version}/{view_name}/"

    def dedup_index_prefix(self, version: str) -> str:
        """The batch-owned dedup index of a version: per TransactionID kept in the last D
        before its horizon, the Kafka time of its last kept copy."""
        return f"{VERSIONS_PREFIX}{version}/{DEDUP_INDEX_DIR}/"

    def manifest_key(self, version: str) -> str:
        """A version exists once this object does; it names every file of the version, so
        readers never list a version's prefix (on S3 a listing can lag a write)."""
        return f"{VERSIONS_PREFIX}{version}/{MANIFEST_NAME}"

    def read_manifest(self, version: str) -> Manifest | None:
        found = self.store.get_versioned(self.manifest_key(version))
        return None if found is None else Manifest.parse(found.data)

    def write_manifest(self, version: str, manifest: Manifest) -> None:
        self.store.put(self.manifest_key(version), manifest.dumps())

    def version_ids(self) -> dict[str, bool]:
        """Every version id with objects in the store, and whether its manifest exists
        (False: an unfinished or killed job's leftovers), in id order."""
        found: dict[str, bool] = {}
        for info in self.store.list(VERSIONS_PREFIX):
            version, _, rest = info.key[len(VERSIONS_PREFIX) :].partition("/")
            found[version] = found.get(version, False) or rest == MANIFEST_NAME
        return dict(sorted(found.items()))

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
        return self.store

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
