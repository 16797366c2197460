"""The OpenAPI shapes of the views routes, generated from the views themselves.

``GET /v1/views/{name}`` answers rows whose fields depend on the view (its dimensions and
measures), so each view gets its own response model here, built at start-up from its
declaration; the contract test holds every answer to the model of its view.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from serving.schemas import META_EXAMPLE, Meta, Money, example
from serving.served_views import ServedView

MAX_ROWS = 10_080  # as many rows as a series has points at most (serving.deps.MAX_POINTS)
DEFAULT_ROWS = 1_000


class ViewMeta(Meta):
    model_config = example({**META_EXAMPLE, "view_version": "a8357973804c", "rows_total": 2})

    view_version: str = Field(description="the version of the view this answer read")
    rows_total: int = Field(description="rows before `limit` cut them (more than `rows` says so)")


class ViewDefinition(BaseModel):
    dimensions: list[str] = Field(description="wire fields the view is keyed by; [] = global")
    window: str = Field(description="minute, hour or day of CreatedTime")
    measures: list[str] = Field(description="measure labels, as rows carry them")
    amount_min: str | None = Field(
        default=None, description="only events with Amount ≥ this (inclusive); null: no bound"
    )
    amount_max: str | None = Field(
        default=None, description="only events with Amount ≤ this (inclusive); null: no bound"
    )


class ViewInfo(BaseModel):
    name: str
    version: str = Field(description="a hash of the normalised definition")
    built_in: bool = Field(description="built in (cannot be changed by the views file)")
    description: str
    definition: ViewDefinition
    state: Literal["building", "serving", "retiring"]
    progress: float = Field(ge=0, le=1, description="build progress (1 once serving)")
    waiting_for: str | None = Field(default=None, description="what a building view waits for")
    answering: bool = Field(
        default=False, description="answers come from this version now (one per view)"
    )
    horizon_ms: int | None = Field(
        default=None, description="the batch horizon it is served at (null before the first)"
    )


class ViewsList(BaseModel):
    model_config = example(
        {
            "views": [
                {
                    "name": "account_minute",
                    "version": "a8357973804c",
                    "built_in": True,
                    "description": "Per source account per minute of CreatedTime.",
                    "definition": {
                        "dimensions": ["SourceAccountID"],
                        "window": "minute",
                        "measures": ["count", "sum", "min", "max"],
                        "amount_min": None,
                        "amount_max": None,
                    },
                    "state": "serving",
                    "progress": 1.0,
                    "horizon_ms": 1796619600000,
                }
            ]
        }
    )

    views: list[ViewInfo]


class Building(BaseModel):
    model_config = example(
        {
            "detail": "view received_hourly (version 25c5ea98aafa) is building",
            "state": "building",
            "progress": 0.667,
            "waiting_for": "a batch run to compute it over all history",
        }
    )

    detail: str
    state: Literal["building"]
    progress: float = Field(ge=0, le=1)
    waiting_for: str | None = None


def title(view: ServedView) -> str:
    """The view's name in CamelCase, for its OpenAPI components."""
    return "".join(part.capitalize() for part in view.name.split("_"))


def row_model(view: ServedView) -> type[BaseModel]:
    """One row of ``view``: the dimensions it is grouped by, ``window_start`` (epoch ms) with
    a granularity, and each measure under its label (money as exact decimal strings)."""
    fields: dict[str, Any] = {
        d: (str | None, Field(default=None, description=f"{d} (when grouped by it)"))
        for d in view.wire_dimensions
    }
    fields["window_start"] = (
        int | None,
        Field(default=None, description="window start, epoch ms (with a granularity)"),
    )
    for m in view.measures:
        kind: Any = Money if m.money else int
        if m.empty is None:  # a min or a max over no events is null
            kind = kind | None
        unit = "an exact decimal amount" if m.money else "a count"
        fields[m.label] = (kind, Field(description=f"{m.label}: {unit}"))
    return create_model(f"{title(view)}Row", **fields)


def answer_model(view: ServedView) -> type[BaseModel]:
    """The answer of ``GET /v1/views/<view>``, with an example built from the view."""
    row = row_model(view)
    sample: dict[str, Any] = {d: "100042" for d in view.wire_dimensions[:1]}
    sample["window_start"] = 1796616000000
    for m in view.measures:
        sample[m.label] = "4500.30" if m.money else 3
    answer = {
        "view": view.name,
        "version": view.version,
        "rows": [sample],
        "meta": {**META_EXAMPLE, "view_version": view.version, "rows_total": 1},
    }
    return create_model(
        f"{title(view)}Answer",
        __config__=example(answer),
        view=(Literal[view.name], ...),  # type: ignore[valid-type]
        version=(str, Field(description="the view version answered from")),
        rows=(list[row], ...),  # type: ignore[valid-type]
        meta=(ViewMeta, ...),
    )
