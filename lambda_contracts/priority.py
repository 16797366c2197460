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


def lower_cpu_priority(nice: int, pid: int = 0) -> None:
    """Run process ``pid`` (0: this one) and its session's autogroup at ``nice`` or lower
    priority; a no-op for 0, and where the kernel offers neither."""
    if nice <= 0:
        return
    with suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, pid) < nice:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
    with suppress(OSError):  # no autogroup scheduling here: the process nice is all there is
        Path(f"/proc/{pid or 'self'}/autogroup").write_text(f"{nice}\n")
