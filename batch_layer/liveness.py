"""A running batch job shows it is alive by writing under its version's prefix.

``prune`` deletes an unfinished version (objects, no manifest) once its newest object is
``GARBAGE_AFTER`` old, not once its id is: a job that runs for longer than that (a rebuild of
a long history) rewrites a heartbeat object every few minutes, so it is never mistaken for
the leftovers of a killed one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lambda_contracts.layout import Layout

HEARTBEAT_NAME = "heartbeat.json"
HEARTBEAT_EVERY_S = 300.0


def heartbeat_key(layout: Layout, version: str) -> str:
    return f"{layout.version_prefix(version)}{HEARTBEAT_NAME}"


def last_written_ms(layout: Layout, version: str) -> int:
    """When the newest object under ``version``'s prefix was written (0 if there is none)."""
    return max(
        (info.modified_ms for info in layout.store.list(layout.version_prefix(version))), default=0
    )


@contextmanager
def heartbeat(layout: Layout, version: str, every_s: float = HEARTBEAT_EVERY_S) -> Iterator[None]:
    """Rewrite the version's heartbeat object now and every ``every_s`` until the block ends."""
    stop = threading.Event()
    key = heartbeat_key(layout, version)

    def put() -> None:
        layout.store.put(key, json.dumps({"at_ms": int(time.time() * 1000)}).encode())

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                put()
            except Exception as exc:  # a missed beat is retried; the job goes on
                print(f"heartbeat of {version} failed: {exc!r}")

    put()  # before the job writes anything

    thread = threading.Thread(target=beat, name=f"heartbeat-{version}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
