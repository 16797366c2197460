"""A declared view as the layers compute it: plain views of mergeable measures, one per set.

Issue 27, step 3. A :class:`~lambda_contracts.view_declarations.ViewDeclaration` compiles to
views of :mod:`lambda_contracts.views`, which every layer already computes the same way
(``View.batch_sql`` on Spark and in the speed store, merged with the measures' monoids):

- **totals**: count (always kept: the checks and ``meta`` count events with it, and it tells a
  key with events from none) and the declared sum, min and max of ``Amount``, keyed by the
  declared dimensions and window, with the declared amount filter.
- **one set per distinct count**: ``distinct(TargetAccountID)`` is the view keyed by the
  declared dimensions *plus* ``TargetAccountID``. Its rows are the set of IDs per key and
  window; merging rows of the same key is the union of sets, whichever layer they came from.
  A distinct count over any range or roll-up is the number of distinct IDs among the rows
  grouped by the asked key (:meth:`DeclaredView.answer`), so it stays exact where a count of
  per-window counts would not.

Each view's storage name carries a digest of (name, version): two versions of one view never
share a table or a file, which is what lets a new version build beside the one serving.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lambda_contracts.buckets import floor_to
from lambda_contracts.events import Transaction
from lambda_contracts.view_declarations import ViewDeclaration
from lambda_contracts.views import AMOUNT_MEASURES, WINDOWS_MS, Key, Measures, View

STORAGE_DIGITS = 16  # the storage name's digest; with its prefix, short for any SQL engine


def event_column(wire: str) -> str:
    """The event column of a wire field (``TargetAccountID`` → ``target_account_id``)."""
    return next(name for name, f in Transaction.model_fields.items() if f.alias == wire)


@dataclass(frozen=True)
class DistinctSet:
    """The set behind ``distinct_<Field>``: ``view`` keyed by the declared dimensions, then
    ``column``, then the window."""

    label: str  # the answer's field, e.g. distinct_TargetAccountID
    column: str  # the event column counted, e.g. target_account_id
    view: View


@dataclass(frozen=True)
class DeclaredView:
    name: str
    version: str
    labels: tuple[str, ...]  # the declared measures' answer fields, in the file's order
    totals: View
    sets: tuple[DistinctSet, ...]
    declaration: ViewDeclaration

    @classmethod
    def of(cls, declaration: ViewDeclaration) -> DeclaredView:
        normalised = declaration.normalised()
        storage = (
            "uv_"
            + hashlib.sha256(f"{declaration.name}:{declaration.version}".encode()).hexdigest()[
                :STORAGE_DIGITS
            ]
        )
        dimensions = tuple(event_column(d) for d in normalised["dimensions"])
        window_ms = WINDOWS_MS[declaration.window]
        bounds = {
            "amount_min_cents": declaration.amount_min_cents,
            "amount_max_cents": declaration.amount_max_cents,
        }
        declared = set(declaration.measures)
        totals = View(
            name=storage,
            dimensions=dimensions,
            window_ms=window_ms,
            measures=tuple(m for m in AMOUNT_MEASURES if m.label == "count" or m.label in declared),
            description=f"{declaration.name} {declaration.version}: totals",
            **bounds,
        )
        sets = []
        for measure in normalised["measures"]:
            if not measure.startswith("distinct("):
                continue
            wire = measure.removeprefix("distinct(").removesuffix(")")
            column = event_column(wire)
            view = View(
                name=f"{storage}_{column.split('_')[0]}",
                dimensions=(*dimensions, column),
                window_ms=window_ms,
                measures=AMOUNT_MEASURES[:1],
                description=f"{declaration.name} {declaration.version}: set of {wire}",
                **bounds,
            )
            sets.append(DistinctSet(f"distinct_{wire}", column, view))
        labels = tuple(_label(m) for m in declaration.measures)
        return cls(declaration.name, declaration.version, labels, totals, tuple(sets), declaration)

    @property
    def computed(self) -> tuple[View, ...]:
        """The views the speed and batch layers compute and store for this version."""
        return (self.totals, *(s.view for s in self.sets))

    def answer(
        self,
        totals: Iterable[tuple[Key, Measures]],
        sets: Mapping[str, Iterable[Key]],
        group_by: Sequence[str] = (),
        window_ms: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> dict[Key, dict[str, int]]:
        """Rows of the declared view: one per value of ``group_by`` (some of its dimension
        columns) and window of ``window_ms`` (None: the whole range), measures by label.

        ``totals``: rows of :attr:`totals` whose keys hold ``columns`` (by default every
        dimension, then ``window_start``: as stored; a query may group them first, by any
        columns that include ``group_by``, and ``window_start`` if ``window_ms``). ``sets``:
        per set label, the keys of its view's rows, with the counted column added before
        ``window_start``. Rows of either from several sources (batch and speed) may repeat
        keys: totals combine, sets unite. A group has a row when it has events.
        """
        columns = tuple(columns) if columns is not None else self.totals.key_columns
        windowed = ("window_start",) if "window_start" in columns else ()
        plain = tuple(c for c in columns if c != "window_start")

        def group_of(key: Key, key_columns: Sequence[str]) -> Key:
            by = dict(zip(key_columns, key, strict=True))
            window = (floor_to(by["window_start"], window_ms),) if window_ms else ()
            return (*(by[c] for c in group_by), *window)

        combined: dict[Key, Measures] = {}
        for key, value in totals:
            group = group_of(key, columns)
            prev = combined.get(group)
            combined[group] = value if prev is None else self.totals.combine(prev, value)
        rows = {g: self.totals.labelled(v) for g, v in combined.items()}
        for distinct in self.sets:
            set_columns = (*plain, distinct.column, *windowed)
            members: dict[Key, set[object]] = {}
            for key in sets.get(distinct.label, ()):
                counted = key[len(plain)]
                members.setdefault(group_of(key, set_columns), set()).add(counted)
            for group, row in rows.items():
                row[distinct.label] = len(members.get(group, ()))
        return {g: {label: row[label] for label in self.labels} for g, row in rows.items()}


def _label(measure: str) -> str:
    """A declared measure's answer field: ``distinct(X)`` → ``distinct_X``."""
    if measure.startswith("distinct("):
        return "distinct_" + measure.removeprefix("distinct(").removesuffix(")")
    return measure
