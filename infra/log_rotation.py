"""Local-mode service logs rotate by size, a bounded number kept, so a week unattended fits.

A service writes its log through a file descriptor it inherited (opened for appending by the
supervisor), so the file cannot be renamed from under it and reopened. Rotation copies the
log to ``<name>.log.1`` (older copies shift to ``.2`` … ``.<keep>``, the oldest dropped) and
truncates it in place; with ``O_APPEND`` the writer's next line lands at the new end. The copy
reads up to the end of the file as it grows, so what can be lost is only what a service
writes between the copy's last read and the truncation, microseconds later (logrotate's
``copytruncate`` has the same window).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LogRotation:
    max_bytes: int  # a log larger than this is rotated
    keep: int  # rotated copies kept per log (.1 newest … .keep oldest)

    def rotate_all(self, logs_dir: Path) -> list[Path]:
        """Rotate every ``*.log`` of ``logs_dir`` that outgrew ``max_bytes``."""
        return [log for log in sorted(logs_dir.glob("*.log")) if self.rotate(log)]

    def rotate(self, log: Path) -> bool:
        """Rotate ``log`` if it is larger than ``max_bytes``; True if it was rotated."""
        try:
            if log.stat().st_size <= self.max_bytes:
                return False
        except FileNotFoundError:
            return False
        self._shift(log)
        copy = _numbered(log, 1)
        with log.open("rb") as src, copy.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            os.truncate(log, 0)
        return True

    def _shift(self, log: Path) -> None:
        """``.n`` → ``.n+1`` from the oldest down; the copy past ``keep`` is dropped."""
        _numbered(log, self.keep).unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            older = _numbered(log, n)
            if older.exists():
                older.replace(_numbered(log, n + 1))


def _numbered(log: Path, n: int) -> Path:
    return log.with_name(f"{log.name}.{n}")
