"""What a rejected record's reason is filed under, and the dead letter's headers.

The speed layer writes a dead letter per rejected record; its metrics and serving's rejects
panel both group reasons by the field a rejection names (``Amount: ...``), ``value`` for the
record as a whole (empty, not UTF-8, not JSON, not an object), ``other`` for anything else: a
bounded set, where the text after the field (positions, values) is not.
"""

from __future__ import annotations

from lambda_contracts.events import Transaction

REASON_FIELDS = frozenset({"value"} | {f.alias or n for n, f in Transaction.model_fields.items()})

# The dead letter's headers: why, and where the record came from.
REASON_HEADER = "reason"
ORIGIN_HEADERS = ("origin.topic", "origin.partition", "origin.offset", "origin.timestamp")


def reason_label(reason: str) -> str:
    """The label of a rejection's reason: its field, or ``other``."""
    field = reason.split(":", 1)[0].strip()
    return field if field in REASON_FIELDS else "other"
