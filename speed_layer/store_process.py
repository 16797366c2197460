"""The speed store's transactions in a process of their own, beside the poll loop's.

The committer thread (:mod:`speed_layer.committer`) overlaps each store transaction with the
next poll batches, and SQLite runs without the GIL; but the transaction's Python share — the
load's parameters bound one by one, SQLAlchemy, the dedup's id set — still took the GIL from
the poll loop, about a tenth of its time (``bench/README.md``). Here the transaction runs in a
child process with an interpreter of its own: the loop's side encodes a transaction's batches
with msgspec (a few hundredths of a microsecond per event) and waits for the answer on a pipe
without the GIL.

The child runs :meth:`SpeedStore.apply` unchanged — the same single transaction that moves the
offsets, so exactly-once does not depend on the process boundary — and answers with its
:class:`AppliedBatch` or its exception (fenced, refused for a record's data, or any other),
which the loop handles as before. It ignores SIGINT and SIGTERM: the loop ends the transaction
in flight, then closes the pipe, and the child exits; if the loop dies, the pipe closes too.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import pickle
import signal
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from lambda_contracts.db import make_engine
from lambda_contracts.view_set import ViewSet
from speed_layer.event_block import EventBlock
from speed_layer.store import AppliedBatch, PartitionBatch, SpeedStore

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()
CLOSE_TIMEOUT_S = 30.0


class StoreProcessError(RuntimeError):
    """The store process is gone (killed, out of memory): nothing more can be applied."""


def encode(batches: list[PartitionBatch]) -> bytes:
    """A transaction's batches as msgpack: each batch's fields, its rows as columns."""
    return _ENCODER.encode(
        [
            (
                b.partition,
                b.expected_offset,
                b.next_offset,
                b.rejected,
                b.max_kafka_ts,
                b.rows.columns,
            )
            for b in batches
        ]
    )


def decode(data: bytes) -> list[PartitionBatch]:
    """The batches :func:`encode` wrote, as the store takes them."""
    return [
        PartitionBatch(partition, expected, next_offset, EventBlock(columns), rejected, max_ts)
        for partition, expected, next_offset, rejected, max_ts, columns in _DECODER.decode(data)
    ]


def serve(
    conn: Connection,
    store_url: str,
    topic: str,
    bucket_ms: int,
    horizon_ms: int,
    views: ViewSet | None = None,
) -> None:
    """The child's loop: apply each transaction received, answer with its outcome."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the loop decides when the store stops
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    store = SpeedStore(make_engine(store_url), topic, bucket_ms, horizon_ms, views)
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return  # the loop's process is gone
        if not data:
            return
        reply: tuple[bool, Any]
        try:
            applied = store.apply(decode(data))
            reply = (True, (applied.events, applied.duplicates, applied.rejected))
        except Exception as exc:
            reply = (False, exc)
        try:
            payload = pickle.dumps(reply)
        except Exception:  # an exception that does not pickle: its words at least
            payload = pickle.dumps((False, RuntimeError(repr(reply[1]))))
        try:
            conn.send_bytes(payload)
        except OSError:
            return  # the loop's process died waiting: its successor reads the stored offsets


class StoreProcess:
    """A child process that applies the speed store's transactions, one at a time, in order.
    Started by :meth:`start` or the first transaction; :meth:`close` ends it."""

    def __init__(
        self,
        store_url: str,
        topic: str,
        bucket_ms: int,
        horizon_ms: int,
        views: ViewSet | None = None,
    ) -> None:
        self._args = (store_url, topic, bucket_ms, horizon_ms, views)
        self._conn: Connection | None = None
        self._proc: Any = None

    def start(self) -> Connection:
        """Start the child (once): its interpreter and imports take a second, better spent
        while the consumer joins its group than while the first poll batch waits."""
        if self._conn is not None:
            return self._conn
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        parent, child = context.Pipe()
        self._proc = context.Process(
            target=serve, args=(child, *self._args), name="speed-store", daemon=True
        )
        self._proc.start()
        child.close()
        self._conn = parent
        # Before multiprocessing's own exit hook, which would wait for the child forever:
        # the child ends when the pipe closes, not on SIGTERM.
        atexit.register(self.close)
        return parent

    def apply(self, batches: list[PartitionBatch]) -> AppliedBatch:
        """:meth:`SpeedStore.apply` in the store process; raises what it raised there."""
        conn = self.start()
        try:
            conn.send_bytes(encode(batches))
            ok, outcome = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError) as exc:
            code = self._proc.exitcode if self._proc is not None else None
            raise StoreProcessError(f"the speed store process exited (code {code})") from exc
        if ok:
            return AppliedBatch(*outcome)
        raise outcome

    def close(self) -> None:
        """End the store process after its last transaction (call with none in flight)."""
        if self._conn is None:
            return
        atexit.unregister(self.close)
        with contextlib.suppress(OSError):  # already gone
            self._conn.send_bytes(b"")
        self._conn.close()
        self._conn = None
        self._proc.join(CLOSE_TIMEOUT_S)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
