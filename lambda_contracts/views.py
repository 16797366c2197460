"""Views, declared once: dimensions, an event-time window and mergeable measures.

Everything that computes a view derives from these declarations:
- the batch layer runs :meth:`View.batch_sql` on Spark (and the benchmark on DuckDB);
- the speed store runs the same :meth:`View.batch_sql` over each poll batch (SQLite or
  PostgreSQL) and merges the result into its rows with the measures' ``sql_merge``;
- the serving layer rolls rows up with :meth:`View.rollup_expressions`;
- tests referee all of them with the independent oracle in ``tests/support/oracle.py``
  (plain loops; the dedup rule itself is ``lambda_contracts.dedup``).

Measures are monoids (count, sum, min, max); an average is derived as sum / count when read.
Amounts are integer cents, so every measure is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from lambda_contracts.buckets import floor_sql, floor_to
from lambda_contracts.events import Transaction
from lambda_contracts.view_declarations import normalise, version_of

Key = tuple[Any, ...]
Measures = tuple[int, ...]

# The windows a view may have, by the name the views file and the API use.
WINDOWS_MS: dict[str, int] = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


def wire_name(column: str) -> str:
    """An event column's field name on the wire and in the API (``SourceAccountID``)."""
    return Transaction.model_fields[column].alias or column


class MeasureKind(Enum):
    """How a measure starts from one event and how two partial values combine."""

    COUNT = "count"
    SUM = "sum"
    MIN = "min"
    MAX = "max"

    def initial(self, value: int) -> int:
        return 1 if self is MeasureKind.COUNT else value

    def combine(self, a: int, b: int) -> int:
        if self is MeasureKind.MIN:
            return a if a <= b else b
        if self is MeasureKind.MAX:
            return a if a >= b else b
        return a + b

    def sql_over_events(self, column: str) -> str:
        """Aggregate over raw events, in SQL that Spark, DuckDB, SQLite and PostgreSQL share."""
        return "count(*)" if self is MeasureKind.COUNT else f"{self.value}({column})"

    def sql_rollup(self, column: str) -> str:
        """Aggregate over partial results of this measure (counts add up)."""
        return f"sum({column})" if self is MeasureKind.COUNT else f"{self.value}({column})"

    def sql_merge(self, a: str, b: str, dialect: str) -> str:
        """Combine two partial values in a row-wise SQL expression (an upsert's SET clause)."""
        if self in (MeasureKind.COUNT, MeasureKind.SUM):
            return f"{a} + {b}"
        if dialect == "sqlite":  # SQLite's two-argument min/max are scalar
            return f"{self.value}({a}, {b})"
        return f"{'least' if self is MeasureKind.MIN else 'greatest'}({a}, {b})"


class Unit(Enum):
    """What a measure's integers count: the API renders cents as money, events as they are."""

    EVENTS = "events"
    CENTS = "cents"


@dataclass(frozen=True)
class Measure:
    name: str  # column name in every store (chosen to be no SQL keyword)
    label: str  # field name in API answers
    kind: MeasureKind
    source: str  # the event column it reads (ignored by COUNT)
    unit: Unit = Unit.CENTS

    @property
    def empty(self) -> int | None:
        """Its value over no events: 0 for a count or a sum, none for a min or a max."""
        return 0 if self.kind in (MeasureKind.COUNT, MeasureKind.SUM) else None


@dataclass(frozen=True)
class View:
    """A keyed, windowed aggregate over deduplicated events."""

    name: str
    dimensions: tuple[str, ...]
    window_ms: int
    measures: tuple[Measure, ...]
    description: str = ""
    # Only events with amount_min_cents <= amount_cents <= amount_max_cents count (inclusive;
    # None: no bound). A filter on the event, so every layer applies it before aggregating.
    amount_min_cents: int | None = None
    amount_max_cents: int | None = None

    def admits(self, row: Mapping[str, Any]) -> bool:
        """Whether an event passes the view's amount filter."""
        cents = row["amount_cents"]
        low, high = self.amount_min_cents, self.amount_max_cents
        return (low is None or cents >= low) and (high is None or cents <= high)

    def filter_sql(self) -> str | None:
        """The amount filter as a SQL predicate (integers only: no injection, no quoting)."""
        bounds = []
        if self.amount_min_cents is not None:
            bounds.append(f"amount_cents >= {int(self.amount_min_cents)}")
        if self.amount_max_cents is not None:
            bounds.append(f"amount_cents <= {int(self.amount_max_cents)}")
        return " AND ".join(bounds) or None

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (*self.dimensions, "window_start")

    @property
    def measure_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.measures)

    @property
    def window(self) -> str:
        """The window's name (minute, hour or day)."""
        return next(name for name, ms in WINDOWS_MS.items() if ms == self.window_ms)

    @property
    def wire_dimensions(self) -> tuple[str, ...]:
        """The dimensions by their wire names, as the views file and the API name them."""
        return tuple(wire_name(d) for d in self.dimensions)

    def definition(self) -> dict[str, Any]:
        """The view in the views file's vocabulary (what ``GET /v1/views`` shows)."""
        return {
            "dimensions": list(self.wire_dimensions),
            "window": self.window,
            "measures": [m.label for m in self.measures],
            "amount_min": _decimal(self.amount_min_cents),
            "amount_max": _decimal(self.amount_max_cents),
        }

    @property
    def version(self) -> str:
        """Its version by the views file's rule: a hash of the normalised definition."""
        measures = [m.label for m in self.measures]
        bounds = (self.amount_min_cents, self.amount_max_cents)
        return version_of(normalise(self.wire_dimensions, self.window, measures, *bounds))

    def measure_index(self, label: str) -> int:
        return [m.label for m in self.measures].index(label)

    @property
    def count_measure(self) -> Measure:
        """The measure counting the view's events (every view has one: the checks need it)."""
        return next(m for m in self.measures if m.kind is MeasureKind.COUNT)

    @property
    def amount_measure(self) -> Measure:
        """The sum of the events' amounts, in cents (what validation and drift compare)."""
        return next(
            m for m in self.measures if m.kind is MeasureKind.SUM and m.source == "amount_cents"
        )

    def labelled(self, value: Measures) -> dict[str, int]:
        """Measures by their API label (count, sum, min, max)."""
        return {m.label: v for m, v in zip(self.measures, value, strict=True)}

    def key_of(self, row: Mapping[str, Any]) -> Key:
        return (*(row[d] for d in self.dimensions), floor_to(row["created_time"], self.window_ms))

    def initial(self, row: Mapping[str, Any]) -> Measures:
        return tuple(m.kind.initial(row.get(m.source, 0)) for m in self.measures)

    def combine(self, a: Measures, b: Measures) -> Measures:
        return tuple(m.kind.combine(x, y) for m, x, y in zip(self.measures, a, b, strict=True))

    def fold(self, rows: Sequence[Mapping[str, Any]]) -> dict[Key, Measures]:
        """Aggregate deduplicated rows into {key: measures}: the declaration's meaning in
        Python, folding :meth:`initial` with :meth:`combine` row by row.

        The layers compute views in SQL (:meth:`batch_sql`, on Spark and in the speed store);
        the tests hold that SQL, and the :meth:`combine` the serving merge uses, to this.
        """
        acc: dict[Key, Measures] = {}
        for row in rows:
            if not self.admits(row):
                continue
            key, value = self.key_of(row), self.initial(row)
            prev = acc.get(key)
            acc[key] = value if prev is None else self.combine(prev, value)
        return acc

    def batch_sql(self, relation: str, carried: Sequence[str] = ()) -> str:
        """SQL computing this view from a relation of deduplicated events (Spark and DuckDB).

        ``carried``: columns of the relation that the view's key determines (the batch layer's
        partition of an event's time), grouped by and selected first, so that a relation
        already partitioned by them is aggregated without another shuffle."""
        window = floor_sql("created_time", self.window_ms)
        select = [*carried, *self.dimensions, f"{window} AS window_start"]
        select += [f"{m.kind.sql_over_events(m.source)} AS {m.name}" for m in self.measures]
        group = [*carried, *self.dimensions, window]
        where = self.filter_sql()
        filtered = f" WHERE {where}" if where else ""
        return f"SELECT {', '.join(select)} FROM {relation}{filtered} GROUP BY {', '.join(group)}"

    def rollup_expressions(self) -> list[str]:
        """``agg(col) AS col`` for each measure, to combine partial rows of this view."""
        return [f"{m.kind.sql_rollup(m.name)} AS {m.name}" for m in self.measures]


AMOUNT_MEASURES = (
    Measure("txn_count", "count", MeasureKind.COUNT, "amount_cents", Unit.EVENTS),
    Measure("amount_sum", "sum", MeasureKind.SUM, "amount_cents"),
    Measure("amount_min", "min", MeasureKind.MIN, "amount_cents"),
    Measure("amount_max", "max", MeasureKind.MAX, "amount_cents"),
)

ACCOUNT_MINUTE = View(
    name="account_minute",
    dimensions=("source_account_id",),
    window_ms=60_000,
    measures=AMOUNT_MEASURES,
    description="Per source account per minute of CreatedTime: count, sum, min, max of Amount.",
)
GLOBAL_MINUTE = View(
    name="global_minute",
    dimensions=(),
    window_ms=60_000,
    measures=AMOUNT_MEASURES,
    description="All accounts per minute of CreatedTime: count, sum, min, max of Amount.",
)

VIEWS: tuple[View, ...] = (ACCOUNT_MINUTE, GLOBAL_MINUTE)
VIEWS_BY_NAME: dict[str, View] = {v.name: v for v in VIEWS}


def _decimal(cents: int | None) -> str | None:
    """Cents as the views file writes amounts ("10000.00")."""
    return None if cents is None else f"{cents // 100}.{cents % 100:02d}"


def keyed(rows: Iterable[Sequence[Any]], key_len: int) -> list[tuple[Key, Measures]]:
    """Flat query rows (key columns, then measures) as (key, measures) pairs of ints.

    A row whose first measure is NULL is an aggregate over nothing and is dropped.
    """
    return [
        (tuple(r[:key_len]), tuple(int(v) for v in r[key_len:]))
        for r in rows
        if r[key_len] is not None
    ]
