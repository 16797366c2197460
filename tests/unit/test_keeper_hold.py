"""An operator's stop holds a service down against the keeper; start or up releases it.

Real processes under the real supervisor and keeper: what ``lambda-platform stop|start NAME``
does, without the rest of the platform.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from infra.keeper import Keeper, hold, is_held, release
from infra.supervisor import Service, Supervisor


def sleeper(name: str) -> Service:
    return Service(
        name=name,
        command=lambda: [sys.executable, "-c", "import time; time.sleep(600)"],
        healthy=lambda: True,
        stop_timeout_s=5,
    )


def checks(keeper: Keeper, rounds: int = 3) -> None:
    for _ in range(rounds):
        keeper.check_once()
        time.sleep(0.05)


def test_a_held_service_stays_down_and_a_released_one_is_kept_again(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    service, other = sleeper("serving"), sleeper("speed-0")
    keeper = Keeper(sup, [service, other], backoff_max_s=0)
    try:
        for s in (service, other):
            sup.start(s)
        hold(sup, service.name)  # `lambda-platform stop serving`
        assert sup.stop(service.name)
        os.killpg(sup.pid(other.name), signal.SIGKILL)  # a crash, beside it
        time.sleep(0.2)
        checks(keeper)
        assert sup.pid(service.name) is None, "the keeper restarted a service an operator stopped"
        assert sup.pid(other.name) is not None, "the keeper must still restart a crashed one"

        release(sup, service.name)  # `lambda-platform start serving` (it starts it too)
        assert not is_held(sup, service.name)
        checks(keeper)
        first = sup.pid(service.name)
        assert first is not None
        os.killpg(first, signal.SIGKILL)  # released: kept like any other again
        time.sleep(0.2)
        checks(keeper)
        assert sup.pid(service.name) not in (None, first)
    finally:
        for s in (service, other):
            sup.stop(s.name)
