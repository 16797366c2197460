"""Which rows of a view an answer needs: one value, passed from the query service to both stores.

Hashable, so the batch cache files the batch part of an answer under it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lambda_contracts.views import View


@dataclass(frozen=True)
class RowQuery:
    """Rows of ``view`` with ``window_start`` in [start_ms, end_ms), grouped by ``group_by``,
    where each ``filters`` dimension equals its value; ``window_ms``: ``window_start`` (when
    grouped by) floored to windows of this size, for hour and day series."""

    view: View
    start_ms: int
    end_ms: int
    group_by: tuple[str, ...] = ()
    filters: tuple[tuple[str, str], ...] = ()  # sorted (dimension, value) pairs
    window_ms: int | None = None

    @classmethod
    def of(
        cls,
        view: View,
        start_ms: int,
        end_ms: int,
        group_by: tuple[str, ...] = (),
        filters: Mapping[str, str] | None = None,
        window_ms: int | None = None,
    ) -> RowQuery:
        return cls(
            view, start_ms, end_ms, group_by, tuple(sorted((filters or {}).items())), window_ms
        )

    @property
    def filter_map(self) -> dict[str, str]:
        return dict(self.filters)
