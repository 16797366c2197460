"""Cheap per-request reads of what changes rarely: CURRENT, the speed floor, the speed watermark.

Every request reads CURRENT twice (its snapshot, then the check that no publish happened while
it computed). Reading and parsing the JSON file each time costs more than the cached answer
it guards, so :class:`ObjectReader` stats the file and re-reads it only when the file changed
(a publish replaces it by rename: a new inode, mtime, ctime) or its reading is older than
``max_age_s`` (a backstop should the file system reuse an inode within one timestamp tick).
On S3 there is nothing to stat: a snapshot may take a reading up to ``max_age_s`` old, but the
check after the computation (``fresh``) always reads the object, and its reading replaces the
cached one — a check against a cached reading would be blind to a publish and its expiry.

The speed watermark is informational and monotonic, so a value a second old is still a true
lower bound; it is refreshed off the event loop (:class:`Refreshed`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio.to_thread
import structlog

from lambda_contracts.layout import CURRENT_KEY, BatchPointer, Layout
from lambda_contracts.retention import RETENTION_KEY, speed_floor
from lambda_contracts.storage import LocalStore

T = TypeVar("T")
log = structlog.get_logger("serving.snapshot")

Signature = tuple[int, int, int, int] | None


def _signature(path: str | None) -> Signature:
    if path is None:  # no file to stat (S3): the reading ages out after max_age_s
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


class ObjectReader(Generic[T]):
    """A small object of the store as of now (``read`` parses it), re-read only when its file
    changed or its reading is ``max_age_s`` old."""

    def __init__(
        self, layout: Layout, key: str, read: Callable[[], T], max_age_s: float = 1.0
    ) -> None:
        # The object's local file, built once (a Path per request costs more); on S3 there
        # is none, and the object is read again once the last reading is max_age_s old.
        local = isinstance(layout.store, LocalStore)
        self.path = layout.store.path(key) if local else None
        self._read = read
        self.max_age_s = max_age_s
        # (file signature, monotonic time of the read, value): replaced as one tuple, so a
        # concurrent reader sees either the old or the new reading, never a mix.
        self._state: tuple[Signature, float, T] | None = None

    def read(self, fresh: bool = False) -> T:
        """The value; ``fresh``: as of now on every backend (on S3, a GET of the object)."""
        signature = _signature(self.path)  # before the read: a change after
        state = self._state  # it leaves a stale signature, so the next call reads again
        now = time.monotonic()
        blind = fresh and self.path is None  # nothing stat() could have told us
        if (
            not blind
            and state is not None
            and state[0] == signature
            and now - state[1] < self.max_age_s
        ):
            return state[2]
        value = self._read()
        self._state = (signature, now, value)
        return value


def current_reader(layout: Layout) -> ObjectReader[BatchPointer | None]:
    """CURRENT, the published batch version."""
    return ObjectReader(layout, CURRENT_KEY, layout.read_current)


def speed_floor_reader(layout: Layout) -> ObjectReader[int]:
    """The speed store's expiry floor: speed rows below it may be gone."""
    return ObjectReader(layout, RETENTION_KEY, lambda: speed_floor(layout))


class Refreshed(Generic[T]):
    """A value recomputed in a worker thread once it is ``max_age_s`` old.

    Readers get the last value at once while the refresh runs, so a slow source (a broker
    timing out) delays no answer; only the first reader of all waits for a value. A refresh
    that fails keeps the previous value (and is retried by the next reader).
    """

    def __init__(self, compute: Callable[[], T], max_age_s: float = 1.0) -> None:
        self.compute = compute
        self.max_age_s = max_age_s
        self._value: tuple[float, T] | None = None  # (monotonic start of its computation, value)
        self._refresh: asyncio.Future[T] | None = None

    async def get(self) -> T:
        value = self._value
        if value is not None and time.monotonic() - value[0] < self.max_age_s:
            return value[1]
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._recompute())
        if value is None:
            return await asyncio.shield(self._refresh)
        return value[1]

    async def _recompute(self) -> T:
        started = time.monotonic()  # the value is at least as old as its computation
        try:
            value = await anyio.to_thread.run_sync(self.compute)
        except Exception as exc:
            if self._value is None:
                raise
            log.warning("refresh failed, keeping the previous value", error=repr(exc))
            return self._value[1]
        self._value = (started, value)
        return value
