"""Who may delete landing files: readers hold a shared lock, compaction's deletes need it alone.

A batch job lists landing files and then reads them for minutes; compaction must not delete a
file it superseded while such a job may still open it. Jobs hold the lock shared for their whole
run; compaction deletes only while it holds the lock exclusively, and otherwise leaves the
superseded files for a later run (readers never see them: ``Layout.landing_files`` skips them).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from lambda_contracts.layout import Layout


@contextmanager
def reading_landing(layout: Layout) -> Iterator[None]:
    """Hold the readers' lock shared while listing and reading landing files."""
    path = layout.landing_readers_lock
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def deleting_landing(layout: Layout) -> Iterator[bool]:
    """Yield True while holding the lock exclusively; False (at once) if a reader holds it."""
    path = layout.landing_readers_lock
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
