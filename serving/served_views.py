"""What the views routes serve: built-in and declared views alike, and a declared view's build.

A :class:`ServedView` is what ``GET /v1/views/<name>`` needs of a view, whichever kind: its
name and version, dimensions by wire name and by column, window, and measures with how each
is rendered. Built-in views are always serving. A declared view version serves once both
layers cover it (:func:`lambda_contracts.view_builds.build_state`):

- the speed layer computes it from the positions recorded when it was deployed
  (``speed_layer.store_deploy``), and
- the batch version answered from holds it (computed over every event below its horizon H)
  and H lies past the newest record applied before those positions, in every partition.

Then every event is in exactly one of the two: below H in the batch version, at or above H in
speed rows of records from the deploy on. Until then it answers 409 with its progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lambda_contracts.declared_views import DeclaredView, event_column
from lambda_contracts.views import WINDOWS_MS, Unit, View


@dataclass(frozen=True)
class ServedMeasure:
    label: str
    money: bool  # cents, rendered as an exact decimal string
    empty: int | None  # its value over no events


@dataclass(frozen=True)
class ServedView:
    name: str
    version: str
    description: str
    wire_dimensions: tuple[str, ...]
    columns: tuple[str, ...]  # the event column of each wire dimension, in the same order
    window: str
    measures: tuple[ServedMeasure, ...]
    definition: dict[str, Any]
    view: View | None = None  # a built-in view
    declared: DeclaredView | None = None
    # A changed view's version that answers until this one serves (its own measures).
    previous: ServedView | None = None

    @property
    def built_in(self) -> bool:
        return self.view is not None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(m.label for m in self.measures)

    @property
    def window_ms(self) -> int:
        return WINDOWS_MS[self.window]

    @classmethod
    def of_view(cls, view: View) -> ServedView:
        return cls(
            name=view.name,
            version=view.version,
            description=view.description,
            wire_dimensions=view.wire_dimensions,
            columns=view.dimensions,
            window=view.window,
            measures=tuple(
                ServedMeasure(m.label, m.unit is Unit.CENTS, m.empty) for m in view.measures
            ),
            definition=view.definition(),
            view=view,
        )

    @classmethod
    def of_declared(
        cls, declared: DeclaredView, previous: DeclaredView | None = None
    ) -> ServedView:
        declaration = declared.declaration
        wire = tuple(sorted(declaration.dimensions))
        return cls(
            name=declared.name,
            version=declared.version,
            description=f"Declared in the views file: {', '.join(declared.labels)} per "
            f"{', '.join(wire) or 'all accounts'} per {declaration.window}.",
            wire_dimensions=wire,
            columns=tuple(event_column(d) for d in wire),
            window=declaration.window,
            measures=_declared_measures(declared),
            definition={
                "dimensions": list(wire),
                "window": declaration.window,
                "measures": list(declaration.measures),
                "amount_min": declaration.amount_min,
                "amount_max": declaration.amount_max,
            },
            declared=declared,
            previous=cls.of_declared(previous) if previous is not None else None,
        )


def _declared_measures(declared: DeclaredView) -> tuple[ServedMeasure, ...]:
    """The declared measures as rendered: count, sum, min and max as their totals' measures
    declare them (unit, empty value); a distinct count is a count, 0 over no events."""
    by_label = {m.label: m for m in declared.totals.measures}
    return tuple(
        ServedMeasure(label, by_label[label].unit is Unit.CENTS, by_label[label].empty)
        if label in by_label
        else ServedMeasure(label, False, 0)
        for label in declared.labels
    )
