"""A run of valid events as columns: how a poll batch travels through the speed layer.

The landing zone writes Arrow columns and the store binds its load's parameters column by
column; a dict per event in between costs more than both (building it, then taking it apart
again in ``pyarrow.Table.from_pylist``). A block holds the landing zone's columns as Python
lists, in log order: a poll batch's events, a partition's landing buffer, a store
transaction's rows. Extending one copies references, not events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

import pyarrow as pa

from lambda_contracts.landing_files import LANDING_SCHEMA

COLUMNS: tuple[str, ...] = tuple(LANDING_SCHEMA.names)


class EventBlock:
    """Valid events with their place in the log, as the landing zone's columns."""

    __slots__ = ("columns",)

    def __init__(self, columns: dict[str, list[Any]] | None = None) -> None:
        self.columns = columns if columns is not None else {name: [] for name in COLUMNS}

    @classmethod
    def placed(
        cls, events: dict[str, list[Any]], partition: int, offsets: list[int], stamps: list[int]
    ) -> EventBlock:
        """Event columns (``plain_event_columns``) completed with where each sits in the log."""
        columns = dict(events)
        columns["kafka_partition"] = list(repeat(partition, len(offsets)))
        columns["kafka_offset"] = offsets
        columns["kafka_ts"] = stamps
        return cls(columns)

    def __len__(self) -> int:
        return len(self.columns["kafka_offset"])

    def append(self, row: Mapping[str, Any]) -> None:
        for name, column in self.columns.items():
            column.append(row[name])

    def extend(self, other: EventBlock) -> None:
        for name, column in self.columns.items():
            column.extend(other.columns[name])

    def column(self, name: str) -> list[Any]:
        return self.columns[name]

    def slice(self, start: int, stop: int) -> EventBlock:
        return EventBlock({name: column[start:stop] for name, column in self.columns.items()})

    def tuples(
        self, names: Sequence[str], start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Each event's values of ``names``, in order, as tuples (zipped in C)."""
        return zip(*(self.columns[name][start:stop] for name in names), strict=True)

    def flat(self, names: Sequence[str], start: int, stop: int) -> tuple[Any, ...]:
        """The values of ``names`` for the events in [start, stop), event after event, in one
        flat tuple: a multi-row statement's parameters, interleaved by slice assignment (no
        tuple per event)."""
        width = len(names)
        values: list[Any] = [None] * ((stop - start) * width)
        for i, name in enumerate(names):
            values[i::width] = self.columns[name][start:stop]
        return tuple(values)

    def to_table(self) -> pa.Table:
        return pa.table(self.columns, schema=LANDING_SCHEMA)
