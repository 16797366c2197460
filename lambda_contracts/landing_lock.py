"""Who may delete landing files: readers hold a lease in the store, compaction's deletes wait.

A batch job lists landing files and then reads them for minutes; compaction must not delete a
file it superseded while such a job may still open it. A job and compaction may run on
different hosts (Airflow's worker beside a Spark driver elsewhere, two schedulers) that share
nothing but the master dataset's store, so the lock lives there: each job writes a *lease*
object (``landing/_readers/<id>.json``) before it lists anything, renews it while it reads and
deletes it when done; compaction deletes superseded files only when no lease is live, and
otherwise leaves them for a later run (readers never see them: ``Layout.landing_files`` skips
them).

Why that is enough: a job lists only after its lease is written (a put that S3 and the local
store make visible to every later list), and compaction marks files superseded (writes the
compacted file) before it looks for leases. A job whose listing could name a superseded file
therefore wrote its lease before compaction looked, and compaction sees it; a job that wrote
its lease later lists after the compacted file exists and never names the old ones.

A lease expires ``ttl_ms`` after its last renewal (a killed driver stops renewing); the
reader's and compaction's clocks may differ by up to ``CLOCK_SKEW_MS``, which compaction adds.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from lambda_contracts.layout import Layout
from lambda_contracts.storage import ObjectNotFound

READERS_PREFIX = "landing/_readers/"
LEASE_TTL_MS = 10 * 60_000  # renewed every tenth of it: a reader must miss ten renewals
CLOCK_SKEW_MS = 60_000  # how far the hosts' clocks may disagree
FORGET_AFTER_MS = 24 * 3600_000  # an expired lease this old is removed (a killed job's)

log = structlog.get_logger("landing_lock")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _write_lease(layout: Layout, key: str, ttl_ms: int) -> None:
    lease = {"expires_ms": _now_ms() + ttl_ms, "ttl_ms": ttl_ms}
    layout.store.put(key, json.dumps(lease).encode())


@contextmanager
def reading_landing(layout: Layout, ttl_ms: int = LEASE_TTL_MS) -> Iterator[str]:
    """Hold a readers' lease while listing and reading landing files; yields its key."""
    key = f"{READERS_PREFIX}{uuid.uuid4().hex}.json"
    _write_lease(layout, key, ttl_ms)
    done = threading.Event()

    def renew() -> None:
        while not done.wait(ttl_ms / 10_000):
            try:
                _write_lease(layout, key, ttl_ms)
            except Exception as exc:  # the store hiccups: the lease still holds for a while
                log.warning("lease renewal failed", lease=key, error=repr(exc))

    renewer = threading.Thread(target=renew, name="landing-lease", daemon=True)
    renewer.start()
    try:
        yield key
    finally:
        done.set()
        renewer.join()
        layout.store.delete(key)


def live_leases(layout: Layout) -> list[str]:
    """Keys of the readers' leases that may still be held; long-expired ones are removed."""
    live = []
    now = _now_ms()
    for info in layout.store.list(READERS_PREFIX):
        try:
            expires = int(json.loads(layout.store.get(info.key))["expires_ms"])
        except ObjectNotFound:
            continue  # released meanwhile
        except (ValueError, KeyError, TypeError):
            expires = info.modified_ms + LEASE_TTL_MS  # unreadable: judged by its write time
        if now < expires + CLOCK_SKEW_MS:
            live.append(info.key)
        elif now > expires + FORGET_AFTER_MS:
            layout.store.delete(info.key)
    return live


@contextmanager
def deleting_landing(layout: Layout) -> Iterator[bool]:
    """Yield True if no reader holds a lease (superseded files may go), else False at once."""
    live = live_leases(layout)
    if live:
        log.info("landing deletes deferred: readers hold leases", leases=len(live))
    yield not live
