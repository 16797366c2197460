"""Query parameters for time: ISO 8601 or epoch milliseconds, always UTC-aware."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_instant(value: str, name: str) -> int:
    """Epoch ms from ``1550149860000`` or ``2019-02-14T13:11:00Z``; ValueError says why not."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{name}: {value!r} is neither epoch milliseconds nor ISO 8601") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # a naive time is read as UTC, and said so in docs
    return int(parsed.timestamp() * 1000)
