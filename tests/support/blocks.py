"""Event blocks from row dicts and back, for tests that write the rows out by hand.

The speed layer builds its blocks from columns (``EventBlock.placed``) or row by row
(``EventBlock.append``); these helpers only spell a test's rows as a block and read them back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from speed_layer.event_block import COLUMNS, EventBlock


def block_of(rows: Iterable[Mapping[str, Any]]) -> EventBlock:
    """The rows, in order, as one block."""
    block = EventBlock()
    for row in rows:
        block.append(row)
    return block


def rows_of(block: EventBlock) -> list[dict[str, Any]]:
    """The block's events as row dicts, in order."""
    return [dict(zip(COLUMNS, values, strict=True)) for values in block.tuples(COLUMNS)]
