"""Copy a SQLite speed store's WAL into the database on a thread of its own.

SQLite checkpoints inside the commit that finds the WAL past its threshold
(``lambda_contracts.db.WAL_AUTOCHECKPOINT_PAGES``): the committing thread copies every frame
not yet in the database file and waits for the fsyncs before its next transaction starts. In
the speed process that thread is the committer, the stage every event waits for. A PASSIVE
checkpoint from another connection runs beside writers and readers and copies the frames
no reader still needs; run every ``interval_s``, it leaves the commit that checkpoints only
the last frames to copy and sync. That commit's checkpoint stays: only a checkpoint between
two of the writer's transactions sees the whole WAL copied, which lets the next one rewind it
(so the WAL stays bounded while the committer never pauses).

Nothing here holds a lock of the store's transactions: a checkpoint that finds another one
running (another speed process's) returns at once, and one that fails is logged and tried
again at the next tick. A checkpoint with nothing new to copy writes nothing.
"""

from __future__ import annotations

import threading

import structlog
from sqlalchemy import Engine

log = structlog.get_logger("speed_layer")


def has_wal(engine: Engine) -> bool:
    """Whether the engine's store is a SQLite file (in WAL mode: ``make_engine``)."""
    database = engine.url.database
    return engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"


class WalCheckpointer:
    """A daemon thread running ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval_s``."""

    def __init__(self, engine: Engine, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WalCheckpointer:
        self.stop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="speed-wal-checkpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the checkpoint in progress, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, frames in the WAL, frames copied so far)."""
        with self.engine.connect() as conn:
            busy, frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        return int(busy), int(frames), int(copied)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.checkpoint()
            except Exception as exc:  # the commits' own checkpoint still bounds the WAL
                log.warning("WAL checkpoint failed; retrying at the next tick", error=repr(exc))
