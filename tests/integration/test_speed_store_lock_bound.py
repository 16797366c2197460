"""A speed host cut off in the middle of a transaction does not hold the store's lock for hours.

A child process takes ``LOCK TABLE speed_dedup`` (as every speed transaction does) through the
store's own engine and is then frozen (SIGSTOP): to PostgreSQL its session sits idle inside a
transaction, like one whose host lost its link, with the kernel still answering for the socket.
A surviving member's transaction must get the lock within the bound the engine sets (60 s
asked here, by ``lock_timeout``; without the bound it waited until the frozen one went away).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import text

from lambda_contracts.db import make_engine
from tests.support.services import Postgres

pytestmark = [pytest.mark.integration]

HOLDER = textwrap.dedent(
    """
    import sys, time
    from sqlalchemy import text
    from lambda_contracts.db import make_engine
    engine = make_engine(sys.argv[1])
    with engine.connect() as conn:
        conn.execute(text("LOCK TABLE speed_dedup IN EXCLUSIVE MODE"))
        print("locked", flush=True)
        time.sleep(3600)
    """
)


def test_a_frozen_lock_holder_loses_the_lock_within_the_bound(postgres: Postgres) -> None:
    url = postgres.new_database()
    survivor = make_engine(url)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        holder.send_signal(signal.SIGSTOP)  # cut off: it never ends its transaction
        with survivor.connect() as conn:
            conn.execute(text("SET lock_timeout = '60s'"))
            conn.execute(text("LOCK TABLE speed_dedup IN EXCLUSIVE MODE"))  # raises if held
            conn.rollback()
    finally:
        holder.kill()
        holder.wait(30)
    survivor.dispose()
