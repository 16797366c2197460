"""The speed store's engine: SQLite (WAL) by default, PostgreSQL by URL — same code.

SQLite gets WAL (readers never block the writer), a busy timeout (several speed-layer processes
share one file) and synchronous=NORMAL: a commit survives a process crash (kill -9); pass
``sqlite_synchronous="FULL"`` where it must survive a power loss too.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from lambda_contracts.store_schema import metadata

# A speed transaction rewrites the same view pages batch after batch (each account's current
# minute): checkpointing the WAL every 10,000 pages (40 MB) instead of SQLite's 1,000 copies
# such a page into the database once per several transactions, not after nearly each one
# (the store's cost per event 4.26 -> 4.01 us at 2M events, bench/README.md 2026-11-28).
WAL_AUTOCHECKPOINT_PAGES = 10_000

# A speed host cut off in the middle of a transaction holds ``LOCK TABLE speed_dedup`` until
# PostgreSQL notices: without bounds, that is the kernel's TCP timeout (~2 h), and the surviving
# member cannot take the partitions over. The server ends a session left idle inside a
# transaction after IDLE_IN_TRANSACTION_S (no speed, batch or serving transaction waits idle
# that long: each runs its statements back to back), and both ends probe a silent peer with
# TCP keepalives. The lock is free within about 20 s of the cut, so with the consumer group's
# rebalance the survivor counts the partitions again within 60 s.
IDLE_IN_TRANSACTION_S = 20
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 5, 5, 3
POSTGRES_CONNECT_ARGS = {
    "keepalives": 1,
    "keepalives_idle": KEEPALIVE_IDLE_S,
    "keepalives_interval": KEEPALIVE_INTERVAL_S,
    "keepalives_count": KEEPALIVE_COUNT,
    "tcp_user_timeout": 1000 * KEEPALIVE_IDLE_S * (1 + KEEPALIVE_COUNT),
    "options": " ".join(
        [
            f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_S * 1000}",
            f"-c tcp_keepalives_idle={KEEPALIVE_IDLE_S}",
            f"-c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S}",
            f"-c tcp_keepalives_count={KEEPALIVE_COUNT}",
        ]
    ),
}


def make_engine(url: str, create: bool = True, sqlite_synchronous: str = "NORMAL") -> Engine:
    """An engine for the speed store; creates missing tables unless ``create`` is False."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA temp_store=MEMORY")  # the speed store's per-batch table
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            cur.close()

    else:
        engine = create_engine(url, pool_pre_ping=True, connect_args=POSTGRES_CONNECT_ARGS)
    if create:
        create_tables(engine)
    return engine


def create_tables(engine: Engine, attempts: int = 5) -> None:
    """Create missing tables; processes starting together may race, so retry what lost."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
