"""A lower bound of the brokers' clock, learned from the timestamps they stamp.

Idle partitions are sealed by time: "every record of this partition stamped before T is
landed". T must come from the clock that stamps the records — the partition leader's, since the
topic uses LogAppendTime — not from the speed host's clock, which may run ahead of the broker
(a later record would then land in an already sealed bucket).

Every broker timestamp we learn of is a lower bound of that broker's clock at the moment we
learn it: the record was stamped before we could read it. From such an observation
``(t, learned_at)`` the clock is extrapolated with the local *monotonic* clock, which measures
only elapsed time (its absolute value and any wall-clock offset of this host play no part).
The extrapolation runs ``RATE_DISCOUNT`` slower than the monotonic clock, so it stays a lower
bound while the two clocks' rates differ by less than that (quartz: < 1e-4), however long the
topic is idle. The newest observation that gives the higher bound wins.

Observations come from every record polled and from the landing progress of all partitions
(what other processes have landed and sealed), so a process that owns only idle partitions
still learns the brokers' time. Before the first observation there is no bound and nothing is
sealed by time. (On a CreateTime topic, which the consumer warns about, buckets and this bound
both follow the producers' clocks instead.)

Several brokers: partitions have different leaders, whose clocks differ by their skew, and a
stamped record may wait for replication before the end offset (high watermark) covers it.
The seal subtracts ``idle_seal_grace_ms`` for both; it is sound while inter-broker skew plus
replication delay stay below it (NTP keeps skew at milliseconds; acks=all replication takes
milliseconds, bounded by ``replica.lag.time.max.ms``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

RATE_DISCOUNT = 1e-3


class BrokerClock:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._base_ms: int | None = None
        self._base_at = 0.0

    def observe(self, broker_ms: int, learned_at: float | None = None) -> None:
        """A timestamp a broker stamped, learned at monotonic time ``learned_at`` (now)."""
        at = self._monotonic() if learned_at is None else learned_at
        current = self.now_ms(at)
        if current is None or broker_ms > current:
            self._base_ms, self._base_at = broker_ms, at

    def now_ms(self, at: float | None = None) -> int | None:
        """A time the brokers' clock has certainly reached (None before any observation)."""
        if self._base_ms is None:
            return None
        at = self._monotonic() if at is None else at
        elapsed_ms = max(0.0, at - self._base_at) * 1000 * (1 - RATE_DISCOUNT)
        return self._base_ms + int(elapsed_ms)
