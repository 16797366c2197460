"""The dedup rule, declared once: both layers import it, neither writes its own copy.

A copy of an event is a **duplicate** when a *kept* copy with the same TransactionID came
earlier in log order (:data:`LOG_ORDER`: Kafka timestamp, partition, offset) and at most the
dedup horizon D before it, by Kafka timestamps. Copies further apart than D are distinct events
(D is the lifetime of an idempotency key in payment APIs, 24 h by default).

The comparison is with the last **kept** copy, not with the last copy seen, so the rule is a
chain: with copies at 0, 1.5·D and 2·D, the first two are kept (1.5·D > D) and the third is a
duplicate of the second (0.5·D ≤ D), although it is 2·D after the first.

Every layer applies the rule through :func:`is_new_event`, whose arguments may be plain ints,
SQLAlchemy column expressions (the speed store's dedup insert) or PySpark columns (the batch
job's scan), because the predicate is written with arithmetic operators only.

State is evicted by **record time**, never by the wall clock: an entry whose kept copy is more
than D before a record-time watermark W (a lower bound of every Kafka timestamp still to come)
can never again make a copy a duplicate, because any later copy has ``ts ≥ W`` and so
``ts - kept > D``. :func:`remembered_from` gives the bound below which entries may go; a
consumer catching up on a days-old backlog therefore keeps exactly the IDs it still needs.
"""

from __future__ import annotations

from typing import Any, TypeVar

DEFAULT_DEDUP_HORIZON_MS = 24 * 3600 * 1000

# Log order, the order of "first copy wins" in both layers' dedup: (Kafka timestamp, partition,
# offset). The timestamp is LogAppendTime, so within a partition this is offset order.
LOG_ORDER: tuple[str, ...] = ("kafka_ts", "kafka_partition", "kafka_offset")

# The order in which copies are judged: "earlier" in the rule means earlier by this key.
DEDUP_ORDER: tuple[str, ...] = LOG_ORDER

# The Kafka timestamp column, the only time the rule looks at (LogAppendTime: the broker's clock).
RECORD_TIME = "kafka_ts"

T = TypeVar("T")


def is_new_event(last_kept_ts: Any, ts: T, horizon_ms: int) -> T:
    """Whether a copy at Kafka time ``ts`` counts, given the last kept copy of its id.

    True when the copy is more than ``horizon_ms`` after the last kept copy; otherwise it is a
    duplicate. Written with ``-`` and ``>`` only, so the same expression is evaluated in Python,
    rendered into SQL by SQLAlchemy, or compiled by Spark: one predicate, three engines.
    A copy with no kept predecessor always counts (callers handle "none yet").
    """
    return ts - last_kept_ts > horizon_ms  # type: ignore[operator,no-any-return]


def remembered_from(record_time_ms: T, horizon_ms: int) -> T:
    """The oldest kept-copy timestamp still worth remembering at record-time watermark W.

    Entries below ``W - D`` satisfy ``is_new_event(entry, ts)`` for every ``ts ≥ W``: forgetting
    them changes no decision. Evicting by a record-time W instead of the wall clock keeps an
    old backlog deduplicated however late it is consumed. Like :func:`is_new_event`, it takes
    an int or a SQL expression.
    """
    return record_time_ms - horizon_ms  # type: ignore[operator,no-any-return]
