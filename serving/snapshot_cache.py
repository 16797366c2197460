"""Cheap per-request reads of what changes rarely: the CURRENT pointer and the speed watermark.

Every request reads CURRENT twice (its snapshot, then the check that no publish happened while
it computed). Reading and parsing the JSON file each time costs more than the cached answer
it guards, so :class:`CurrentReader` stats the file and re-reads it only when the file changed
(a publish replaces it by rename: a new inode, mtime, ctime) or its reading is older than
``max_age_s`` (a backstop should the file system reuse an inode within one timestamp tick).

The speed watermark is informational and monotonic, so a value up to a second old is still a
true lower bound (:class:`Recent`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from lambda_contracts.layout import BatchPointer, Layout

T = TypeVar("T")

Signature = tuple[int, int, int, int] | None


def _signature(path: os.PathLike[str] | str) -> Signature:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


class CurrentReader:
    """CURRENT as of now, re-read only when the pointer file changed or is ``max_age_s`` old."""

    def __init__(self, layout: Layout, max_age_s: float = 1.0) -> None:
        self.layout = layout
        self.max_age_s = max_age_s
        # (file signature, monotonic time of the read, pointer): replaced as one tuple, so a
        # concurrent reader sees either the old or the new reading, never a mix.
        self._state: tuple[Signature, float, BatchPointer | None] | None = None

    def read(self) -> BatchPointer | None:
        signature = _signature(self.layout.current_file)  # before the read: a change after
        state = self._state  # it leaves a stale signature, so the next call reads again
        now = time.monotonic()
        if state is not None and state[0] == signature and now - state[1] < self.max_age_s:
            return state[2]
        pointer = self.layout.read_current()
        self._state = (signature, now, pointer)
        return pointer


class Recent(Generic[T]):
    """A value recomputed at most every ``max_age_s`` (computed by one caller at a time)."""

    def __init__(self, compute: Callable[[], T], max_age_s: float = 1.0) -> None:
        self.compute = compute
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._value: tuple[float, T] | None = None

    def get(self) -> T:
        cached = self._value
        if cached is not None and time.monotonic() - cached[0] < self.max_age_s:
            return cached[1]
        with self._lock:
            cached = self._value
            if cached is not None and time.monotonic() - cached[0] < self.max_age_s:
                return cached[1]
            started = time.monotonic()  # the value is at least as old as its computation
            value = self.compute()
            self._value = (started, value)
            return value
