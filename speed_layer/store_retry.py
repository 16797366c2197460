"""The speed store's failure rules: a fenced commit is final, a transient error is retried.

A transaction that fails transiently (deadlock with another writer such as the batch publish's
expiry, serialization failure, lost connection, SQLite busy) is re-run whole with backoff
(:func:`retry_transient`); nothing of the failed attempt was committed. A commit refused by the
offset fence (:class:`FencedError`) means another process owns the partition: never retried.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")

# SQLSTATEs after which re-running the whole transaction can succeed: serialization failure,
# deadlock, connection exceptions (class 08) and server shutdown/restart (57P01-57P03).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})


class FencedError(RuntimeError):
    """Another consumer advanced a partition first: this process no longer owns it."""


def is_transient(exc: BaseException) -> bool:
    """Whether re-running the failed transaction may succeed (never for a fenced commit)."""
    if isinstance(exc, FencedError):
        return False
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if sqlstate:
        return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08")
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return "locked" in message or "busy" in message
    # A psycopg OperationalError without SQLSTATE: the server or the network went away.
    return isinstance(exc, psycopg.OperationalError)


def retry_transient(
    action: Callable[[], T],
    attempts: int = 6,
    base_delay_s: float = 0.05,
    max_delay_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``action`` (a whole transaction); re-run it after a transient database error.

    Backoff is exponential with full jitter, so two processes that deadlocked do not collide
    again in lockstep. Other errors, and the last transient one, propagate.
    """
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            sleep(random.uniform(0, min(max_delay_s, base_delay_s * 2**attempt)))
    raise AssertionError("unreachable")  # pragma: no cover
