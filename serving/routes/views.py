"""Any view, queried generically: ``GET /v1/views`` lists them, ``GET /v1/views/<name>``
answers one over a range, by granularity, filtered by its dimensions, grouped and ranked.

Each view gets its own route, built at start-up from its declaration: its dimensions become
query parameters (filters) and ``group_by`` choices, its measures ``order_by`` choices, and
its rows a response model (:mod:`serving.view_schemas`) — so OpenAPI documents every view.
A name no view has is answered by the catch-all route with a 404 naming the views there are.
Built-in and declared views are served alike (:class:`~serving.served_views.ServedView`); a
declared view that is still building answers 409 with its progress, never a partial answer.

``async`` routes, like the built-in ones: a key's rows (or a global view's) take well under a
millisecond, and a thread pool of sync routes opened a store connection per request past the
pool's size under load (bench/README.md, "Serving declared views"). An answer over every key
of a view (a top-N without a filter) is not sub-millisecond work: it runs in a worker thread,
off the event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query, Request, status

from lambda_contracts.events import ID_MAX_LENGTH
from lambda_contracts.view_builds import SERVING, BuildState
from lambda_contracts.views import Key
from serving.deps import QueriesDep, RangeDep, TimeRange, check_points, unprocessable
from serving.queries import Granularity, QueryService, Snapshot
from serving.routes.common import JSONAnswer, meta
from serving.schemas import INVALID_INPUT, ErrorDetail, money
from serving.served_views import ServedView
from serving.view_schemas import (
    DEFAULT_ROWS,
    MAX_ROWS,
    Building,
    ViewsList,
    answer_model,
    title,
)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No view has this name; `detail` lists those"}
}


BUILDING: dict[int | str, dict[str, Any]] = {
    409: {"model": Building, "description": "A declared view still building: its progress"}
}


def views_router(views: Sequence[ServedView]) -> APIRouter:
    """The routes of ``views``: the list, one route per view, and the catch-all 404."""
    router = APIRouter(prefix="/v1/views", tags=["views"])
    by_name = {v.name: v for v in views}

    @router.get("", response_model=ViewsList)
    def list_views(queries: QueriesDep) -> JSONAnswer:
        """Every view: its definition, version, state, build progress and horizon."""
        snap = queries.snapshot()
        return JSONAnswer({"views": [e for v in views for e in _entries(v, queries, snap)]})

    for view in views:
        router.add_api_route(
            f"/{view.name}",
            _answering(view),
            methods=["GET"],
            response_model=answer_model(view),
            summary=f"Query {view.name}",
            description=_described(view),
            responses={} if view.built_in else BUILDING,
            openapi_extra=INVALID_INPUT,
        )

    @router.get("/{name}", responses=NOT_FOUND, include_in_schema=False)
    def unknown_view(name: str) -> None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no view named {name!r}; the views are: {', '.join(sorted(by_name))}",
        )

    return router


def _state(view: ServedView, queries: QueryService, snap: Snapshot) -> BuildState:
    return SERVING if view.declared is None else queries.build_state(snap, view.declared)


def _entries(view: ServedView, queries: QueryService, snap: Snapshot) -> list[dict[str, Any]]:
    """The view's version, and while it builds, the previous version answering meanwhile
    (state "retiring": it serves until the new one does, then is retired)."""
    built = _state(view, queries, snap)
    entries = [_info(view, built, snap, answering=built is SERVING)]
    before = view.previous
    if (
        built is not SERVING
        and before is not None
        and before.declared is not None
        and queries.build_state(snap, before.declared) is SERVING
    ):
        entries.append(_info(before, BuildState("retiring", 1.0), snap, answering=True))
    return entries


def _info(view: ServedView, built: BuildState, snap: Snapshot, answering: bool) -> dict[str, Any]:
    return {
        "name": view.name,
        "version": view.version,
        "built_in": view.built_in,
        "description": view.description,
        "definition": view.definition,
        "state": built.state,
        "progress": built.progress,
        "waiting_for": built.waiting_for,
        "answering": answering,
        "horizon_ms": snap.horizon_ms if snap.pointer and answering else None,
    }


def _described(view: ServedView) -> str:
    dims = ", ".join(view.wire_dimensions) or "none (one global key)"
    building = "" if view.built_in else " Until it serves it answers 409 with its progress."
    return (
        f"{view.description}\n\nDimensions: {dims}. Window: {view.window}. Measures: "
        f"{', '.join(m.label for m in view.measures)}.{building}\n\nWithout `granularity` "
        "and `group_by` "
        "the answer is one row over the whole range (its measures' empty values if no event "
        "matched). With either, one row per window and/or dimension value that has events, "
        "by key, or by `order_by` (largest first, ties by key), at most `limit` rows."
    )


def _answering(view: ServedView) -> Callable[..., Awaitable[JSONAnswer]]:
    """The route function of ``view``, its signature built from the view's declaration."""
    dims = view.wire_dimensions
    columns = dict(zip(dims, view.columns, strict=True))
    name = title(view)
    order_by_enum = StrEnum(f"{name}Measure", {m.label: m.label for m in view.measures})
    group_by_enum = StrEnum(f"{name}Dimension", {d: d for d in dims}) if dims else None
    allowed = {"start", "end", "granularity", "order_by", "limit", *dims}
    if group_by_enum is not None:
        allowed.add("group_by")

    async def answer(
        request: Request, span: TimeRange, queries: QueryService, **params: Any
    ) -> Any:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise unprocessable(
                unknown[0],
                f"unknown parameter {unknown[0]!r} for view {view.name}; "
                f"its parameters are: {', '.join(sorted(allowed))}",
                request.query_params[unknown[0]],
            )
        granularity: Granularity | None = params["granularity"]
        window_ms = None
        if granularity is not None:
            if granularity.ms < view.window_ms:
                raise unprocessable(
                    "granularity",
                    f"granularity {granularity.value} is finer than the window of view "
                    f"{view.name} ({view.window})",
                    granularity.value,
                )
            check_points(span, granularity)
            window_ms = granularity.ms
        group_by = params.get("group_by")
        group_column = columns[group_by.value] if group_by is not None else None
        filters = {columns[d]: params[d] for d in dims if params[d] is not None}
        order_by = params["order_by"]

        query = (span.start_ms, span.end_ms), filters, group_column, window_ms
        await queries.prepare()
        consistent = partial(queries.consistent, lambda s: _rows(view, queries, s, *query))
        if filters or not dims:  # a key's rows, or a global view's: microseconds
            snap, found = consistent()
        else:  # every key's rows (a top-N): in a worker thread, off the event loop
            snap, found = await anyio.to_thread.run_sync(consistent)
        if isinstance(found, BuildState):
            return _building(view, found)
        answered, merged = found  # the view's version, or its previous one until it serves
        grouped = group_column is not None or window_ms is not None
        ranked = _ranked(merged, order_by.value if order_by in answered.labels else None)
        rows = [_row(answered, key, value, group_by, window_ms) for key, value in ranked]
        if not grouped:  # one row over the whole range, even over no events
            rows = rows or [_measures(answered, None)]
        total = len(rows)
        return JSONAnswer(
            {
                "view": view.name,
                "version": answered.version,
                "rows": rows[: params["limit"]],
                "meta": {
                    **meta(snap, await queries.recent_watermark.get()),
                    "view_version": answered.version,
                    "rows_total": total,
                },
            }
        )

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("request", keyword, annotation=Request),
        inspect.Parameter("span", keyword, annotation=RangeDep),
        inspect.Parameter("queries", keyword, annotation=QueriesDep),
        inspect.Parameter(
            "granularity",
            keyword,
            default=None,
            annotation=Annotated[
                Granularity | None,
                Query(description=f"one row per window of this size (at least {view.window})"),
            ],
        ),
    ]
    if group_by_enum is not None:
        parameters.append(
            inspect.Parameter(
                "group_by",
                keyword,
                default=None,
                annotation=Annotated[
                    group_by_enum | None, Query(description="one row per value of this dimension")
                ],
            )
        )
    parameters += [
        inspect.Parameter(
            "order_by",
            keyword,
            default=None,
            annotation=Annotated[
                order_by_enum | None,
                Query(description="rank rows by this measure, largest first (ties by key)"),
            ],
        ),
        inspect.Parameter(
            "limit",
            keyword,
            default=DEFAULT_ROWS,
            annotation=Annotated[
                int, Query(ge=1, le=MAX_ROWS, description="at most this many rows")
            ],
        ),
        *(
            inspect.Parameter(
                d,
                keyword,
                default=None,
                annotation=Annotated[
                    str | None,
                    Query(
                        min_length=1,
                        max_length=ID_MAX_LENGTH,
                        description=f"only events with this {d}",
                    ),
                ],
            )
            for d in dims
        ),
    ]
    answer.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    answer.__name__ = f"query_{view.name}"
    answer.__doc__ = view.description
    return answer


Rows = dict[Key, dict[str, int]]


def _rows(
    view: ServedView,
    queries: QueryService,
    snap: Snapshot,
    span: tuple[int, int],
    filters: dict[str, str],
    group_column: str | None,
    window_ms: int | None,
) -> tuple[ServedView, Rows] | BuildState:
    """The rows on ``snap`` by key, measures by label, and the version they are of: the
    view's, or while a changed view's new version builds, its previous one if that serves.
    A declared view with neither serving gives the new version's build state instead."""
    if view.view is not None:
        merged = queries.view_rows(snap, view.view, span, filters, group_column, window_ms)
        return view, {key: view.view.labelled(value) for key, value in merged.items()}
    query = (span, filters, group_column, window_ms)
    assert view.declared is not None
    built = queries.build_state(snap, view.declared)
    if built is SERVING:
        return view, queries.declared_rows(snap, view.declared, *query)
    before = view.previous.declared if view.previous is not None else None
    if before is not None and queries.build_state(snap, before) is SERVING:
        assert view.previous is not None
        return view.previous, queries.declared_rows(snap, before, *query)
    return built


def _building(view: ServedView, built: BuildState) -> JSONAnswer:
    """409: the view is not answered until both layers cover it, never partially."""
    body = {
        "detail": f"view {view.name} (version {view.version}) is building",
        "state": built.state,
        "progress": built.progress,
        "waiting_for": built.waiting_for,
    }
    return JSONAnswer(body, status_code=status.HTTP_409_CONFLICT)


def _ranked(merged: Rows, order_by: str | None) -> list[tuple[Key, dict[str, int]]]:
    """Rows by key, or by ``order_by`` largest first with ties by key."""
    if order_by is None:
        return sorted(merged.items())
    return sorted(merged.items(), key=lambda kv: (-kv[1][order_by], kv[0]))


def _measures(view: ServedView, value: dict[str, int] | None) -> dict[str, Any]:
    """Each measure under its label, cents as money; over no events, its empty value."""
    fields: dict[str, Any] = {}
    for m in view.measures:
        v = m.empty if value is None else value[m.label]
        fields[m.label] = money(v) if m.money else v
    return fields


def _row(
    view: ServedView,
    key: Key,
    value: dict[str, int],
    group_by: StrEnum | None,
    window_ms: int | None,
) -> dict[str, Any]:
    """A row: the dimension grouped by, the window start, then the measures by label."""
    row: dict[str, Any] = {}
    if group_by is not None:
        row[group_by.value] = key[0]
    if window_ms is not None:
        row["window_start"] = key[-1]
    return {**row, **_measures(view, value)}
