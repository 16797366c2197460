"""The landing zone's write-behind queue: order, and a failure that cancels what follows."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lambda_contracts.layout import Layout, PartitionProgress
from speed_layer.landing import LandingWriter
from speed_layer.write_behind import WriteBehind
from tests.support.blocks import block_of
from tests.support.landing_rows import BUCKET, landing_row


def test_writes_run_in_submission_order_on_another_thread() -> None:
    writes = WriteBehind("test", max_pending=3)
    done: list[tuple[int, str]] = []
    for i in range(10):
        writes.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    writes.wait()
    assert [i for i, _ in done] == list(range(10))
    assert all(name != threading.current_thread().name for _, name in done)
    writes.close()


def test_a_failed_write_cancels_the_later_ones_until_recovered() -> None:
    writes = WriteBehind("test", max_pending=10)
    release = threading.Event()
    done: list[int] = []

    def fail() -> None:
        release.wait()
        raise OSError("disk full")

    writes.submit(lambda: done.append(1))
    writes.submit(fail)
    writes.submit(lambda: done.append(3))  # queued behind the failure: never runs
    release.set()
    with pytest.raises(OSError, match="disk full"):
        writes.wait()
    with pytest.raises(OSError, match="disk full"):  # kept until recovered
        writes.submit(lambda: done.append(4))
    assert writes.recover() is None  # it was raised: the caller has reported it
    writes.submit(lambda: done.append(5))
    writes.wait()
    assert done == [1, 5]
    writes.close()


def test_a_failure_never_raised_is_handed_over_when_recovering() -> None:
    writes = WriteBehind("test")

    def s3_down() -> None:
        raise OSError("S3 down")

    writes.submit(s3_down)
    writes.drain()
    unraised = writes.recover()
    assert isinstance(unraised, OSError) and "S3 down" in str(unraised)
    writes.wait()  # forgotten: nothing raised
    writes.close()


def test_submitting_waits_for_the_oldest_write_when_the_queue_is_full() -> None:
    writes = WriteBehind("test", max_pending=1)
    release = threading.Event()
    writes.submit(release.wait)
    submitted = threading.Event()

    def submit_second() -> None:
        writes.submit(lambda: None)
        submitted.set()

    thread = threading.Thread(target=submit_second)
    thread.start()
    assert not submitted.wait(0.2)  # the queue holds one write: the second waits
    release.set()
    assert submitted.wait(5)
    thread.join()
    writes.close()


def test_a_failed_landing_write_never_leaves_progress_ahead_of_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first flush's file cannot be written; the second flush (queued behind it) must not
    record progress past the missing file. After recovery the writer starts again from the
    durable progress, and landing the records again fills the gap."""
    layout = Layout(tmp_path)
    writer = LandingWriter(layout, BUCKET, flush_ms=60_000, flush_records=1, grace_ms=100)
    writer.assign(0)
    layout.write_progress(PartitionProgress(0, 0, 0))
    put = layout.store.put
    refused = threading.Event()

    def refuse_first_file(key: str, data: bytes) -> str:
        if key.endswith(".parquet") and not refused.is_set():
            refused.set()
            raise OSError("No space left on device")
        return put(key, data)

    monkeypatch.setattr(layout.store, "put", refuse_first_file)
    writer.add_many(0, block_of([landing_row(0, 0, 1_100)]), 1)
    writer.flush_due()  # the buffer is full: its write is queued, not waited for
    writer.add_many(0, block_of([landing_row(0, 1, 1_200)]), 2)
    with pytest.raises(OSError, match="No space left"):
        writer.flush(0)
    assert layout.read_progress(0) == PartitionProgress(0, 0, 0)
    assert layout.landing_files() == []

    writer.recover()
    writer.forget(0)
    assert writer.assign(0) == 0  # from the durable progress: both records land again
    writer.add_many(0, block_of([landing_row(0, 0, 1_100), landing_row(0, 1, 1_200)]), 2)
    writer.flush(0)
    assert layout.landing_files() == ["landing/bucket=1000/p0-0-1.parquet"]
    assert layout.read_progress(0) == PartitionProgress(0, 2, 1_200)
    writer.close()
