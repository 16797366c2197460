"""Debian's headless Chromium for pytest-playwright's ``page`` fixture (the dashboard's and the
docs' browser tests), and where their screenshots go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
# Screenshots of the pages under test (git-ignored; the README shows a current one).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARTIFACTS.mkdir(exist_ok=True)

LAUNCH: dict[str, Any] = {
    "executable_path": str(CHROMIUM),
    "headless": True,
    "args": [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ],
}
VIEWPORT = {"width": 1280, "height": 720}
