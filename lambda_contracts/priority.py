"""Lower CPU priority for work that can wait: on a shared host batch work yields to serving and
the speed layer, whose latency users see.

``nice`` alone does little on Linux with autogroup scheduling (the default of most kernels):
CPU time is shared between the autogroups of sessions first, and a process's nice only orders
it within its own group. The platform's services each start a session of their own, so the
group's nice is set as well (``/proc/<pid>/autogroup``), where the kernel has one.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path


def lower_cpu_priority(nice: int) -> None:
    """Run this process (the calling thread and those it starts) and its session's
    autogroup at ``nice`` or lower priority; a no-op for 0, and where the kernel offers
    neither."""
    if nice <= 0:
        return
    with suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, 0) < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    lower_autogroup_priority(nice)


def lower_autogroup_priority(nice: int, pid: int = 0) -> None:
    """Set the nice of the autogroup (session) of process ``pid`` (0: this one), never
    raising its priority; a no-op for 0 and where there is no autogroup scheduling."""
    if nice <= 0:
        return
    path = Path(f"/proc/{pid or 'self'}/autogroup")
    with suppress(OSError, ValueError, IndexError):  # "/autogroup-N nice K"
        if int(path.read_text().split()[-1]) >= nice:
            return
    with suppress(OSError):
        path.write_text(f"{nice}\n")
