"""Compaction of sealed landing buckets: fewer files, the same rows, whatever is killed when."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from batch_layer.compaction import STEPS, compact
from batch_layer.inputs import spark_uri
from batch_layer.versions import new_version_id
from lambda_contracts.landing_lock import reading_landing
from lambda_contracts.layout import Layout, superseded_files
from lambda_contracts.manifest import Manifest
from tests.support.small_landing_files import (
    BUCKET_MS,
    land_small_files,
    read_listed,
)

ROOT = Path(__file__).resolve().parents[2]


def _files_per_bucket_partition(layout: Layout) -> Counter[tuple[int, str]]:
    # keys look like landing/bucket=<ms>/p<partition>-<first>-<last>.parquet
    return Counter(
        (int(k.split("/")[1].split("=")[1]), k.split("/")[2].split("-")[0])
        for k in layout.landing_files()
    )


def _stored(layout: Layout) -> int:
    """Landing files in the store, listed or not."""
    return len([o for o in layout.store.list("landing/bucket=") if o.key.endswith(".parquet")])


def test_superseded_means_contained_in_one_other_file_of_the_partition(tmp_path: Path) -> None:
    names = ["p0-0-9", "p0-0-3", "p0-4-9", "p0-8-12", "p1-0-3", "p0-2-11"]
    files = [tmp_path / f"{n}.parquet" for n in names]
    assert {f.stem for f in superseded_files(files)} == {"p0-0-3", "p0-4-9"}


def test_compaction_leaves_one_file_per_bucket_and_partition_with_the_same_rows(
    layout: Layout,
) -> None:
    landed = land_small_files(layout)
    on_disk = _stored(layout)
    report = compact(layout, below_ms=2 * BUCKET_MS)

    assert on_disk == 3 * 11
    assert set(_files_per_bucket_partition(layout).values()) == {1}
    assert report.files_before == on_disk and report.files_after == 6
    assert read_listed(layout) == Counter(set(landed))  # every offset once
    assert report.deleted == on_disk  # compacted files have new names: every old one went
    assert _stored(layout) == 6  # small files are gone
    again = compact(layout, below_ms=2 * BUCKET_MS)
    assert again.compacted == [] and again.deleted == 0  # idempotent


def test_only_buckets_below_the_limit_are_touched(layout: Layout) -> None:
    land_small_files(layout)
    untouched = layout.landing_keys_by_bucket()[BUCKET_MS]
    compact(layout, below_ms=BUCKET_MS)
    assert len(layout.landing_files(below_ms=BUCKET_MS)) == 3
    assert layout.landing_keys_by_bucket()[BUCKET_MS] == untouched


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_any_step_loses_nothing_counts_nothing_twice_and_the_next_run_completes(
    tmp_path: Path, step: str
) -> None:
    layout = Layout(tmp_path)
    landed = land_small_files(layout)
    # Before compaction a replay overlaps the files around it: readers already see a few
    # offsets twice and deduplicate them by (partition, offset).
    before = read_listed(layout)
    assert before.keys() == set(landed)
    # A kill during an earlier write left a temp file behind (before its fsync and rename).
    bucket_dir = tmp_path / "landing" / "bucket=0"
    (bucket_dir / ".p0-0-19.parquet.tmp-4242").write_bytes(b"PAR1 half a file")
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from batch_layer.compaction import compact\n"
        "from lambda_contracts.layout import Layout\n"
        "step = sys.argv[2]\n"
        "compact(Layout(Path(sys.argv[1])), below_ms=int(sys.argv[3]),\n"
        "        fault=lambda s: os._exit(9) if s == step else None)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), step, str(2 * BUCKET_MS)], env=env
    )
    assert killed.returncode == 9

    midway = read_listed(layout)
    assert midway.keys() == set(landed)  # nothing lost
    assert all(midway[k] <= before[k] for k in midway)  # no copy a reader did not see before
    compact(layout, below_ms=2 * BUCKET_MS)
    assert read_listed(layout) == Counter(set(landed))
    assert set(_files_per_bucket_partition(layout).values()) == {1}


def test_files_a_kept_version_names_or_a_running_job_reads_are_kept(layout: Layout) -> None:
    landed = land_small_files(layout)
    named_key = layout.landing_files(below_ms=BUCKET_MS)[0]
    named = spark_uri(layout, named_key)
    kept = new_version_id("kept")
    layout.write_manifest(kept, Manifest(version=kept, horizon_ms=0, input_files={named: 4}))

    with reading_landing(layout):  # a batch job is reading
        during = compact(layout, below_ms=2 * BUCKET_MS)
    assert during.deleted == 0 and during.kept_for_readers > 0
    assert read_listed(layout) == Counter(set(landed))  # superseded files are not listed

    after = compact(layout, below_ms=2 * BUCKET_MS)
    assert layout.store.exists(named_key) and after.kept_for_readers == 1  # named by v1
    assert after.deleted == during.kept_for_readers - 1


READER_ON_ANOTHER_HOST = """
import sys
from lambda_contracts.landing_lock import reading_landing
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings

layout = Layout.of(Settings())
with reading_landing(layout):
    listed = layout.landing_files()
    print(len(listed), flush=True)
    sys.stdin.read()  # reading, until told the job is done
"""


@pytest.mark.integration
def test_a_job_on_another_host_keeps_what_it_may_read(s3_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The job and compaction share the store and nothing else: each its own process and
    data directory (another host's disk, where a local lock file would not be seen)."""
    from tests.support.stores import s3_store

    store = s3_store(s3_server)
    compactor = Layout(tmp_path / "compactor-host", store)
    landed = land_small_files(compactor)
    listed_by_job = compactor.landing_files()
    location = store.config.location
    env = {
        **os.environ,
        "LAMBDA_DATA_DIR": str(tmp_path / "job-host"),
        "LAMBDA_STORAGE_URL": f"s3://{location.bucket}/{location.prefix}",
        "LAMBDA_S3_ENDPOINT": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    job = subprocess.Popen(
        [sys.executable, "-c", READER_ON_ANOTHER_HOST],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert job.stdout is not None and int(job.stdout.readline()) == len(listed_by_job)
        during = compact(compactor, below_ms=2 * BUCKET_MS)
        assert during.deleted == 0 and during.kept_for_readers > 0
        assert all(store.exists(key) for key in listed_by_job)  # what the job may still open
    finally:
        assert job.stdin is not None
        job.stdin.close()
        assert job.wait(timeout=30) == 0
    assert store.list("landing/_readers/") == []  # the job released its lease
    after = compact(compactor, below_ms=2 * BUCKET_MS)
    assert after.deleted == during.kept_for_readers
    assert read_listed(compactor) == Counter(set(landed))


def test_a_killed_jobs_lease_stops_holding_once_expired(tmp_path: Path) -> None:
    """A driver killed mid-read stops renewing: its lease holds until it expires (plus the
    clock skew allowed between hosts), then compaction deletes again and forgets it."""
    import json
    import time

    from lambda_contracts.landing_lock import (
        CLOCK_SKEW_MS,
        FORGET_AFTER_MS,
        READERS_PREFIX,
        deleting_landing,
    )

    layout = Layout(tmp_path)
    now = int(time.time() * 1000)

    def lease(name: str, expires_ms: int) -> str:
        key = f"{READERS_PREFIX}{name}.json"
        layout.store.put(key, json.dumps({"expires_ms": expires_ms}).encode())
        return key

    held = lease("running", now + 60_000)
    with deleting_landing(layout) as may_delete:
        assert not may_delete
    layout.store.delete(held)
    skewed = lease("just-expired", now - CLOCK_SKEW_MS // 2)  # another host's clock may lag
    with deleting_landing(layout) as may_delete:
        assert not may_delete
    layout.store.delete(skewed)
    lease("killed-yesterday", now - FORGET_AFTER_MS - 1)
    kept = lease("killed-an-hour-ago", now - 3600_000)
    with deleting_landing(layout) as may_delete:
        assert may_delete
    assert [o.key for o in layout.store.list(READERS_PREFIX)] == [kept]  # the old one is gone
