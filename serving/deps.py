"""Typed dependencies: settings, the query service, validated time ranges, optional auth.

All ``async def``: they do microseconds of work, and FastAPI runs a plain ``def`` dependency
in the thread pool — a hop per dependency per request.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lambda_contracts.events import MAX_CREATED_TIME_MS
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from serving.queries import Granularity, QueryService
from serving.timeparse import parse_instant

MAX_POINTS = 10_080  # a week of minutes, ~14 months of hours, ~27 years of days


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_queries(request: Request) -> QueryService:
    return request.app.state.queries


async def get_layout(request: Request) -> Layout:
    return request.app.state.layout


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
QueriesDep = Annotated[QueryService, Depends(get_queries)]
LayoutDep = Annotated[Layout, Depends(get_layout)]

_bearer = HTTPBearer(auto_error=False)


async def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """When ``LAMBDA_API_TOKEN`` is set, /v1 needs ``Authorization: Bearer <token>``."""
    if settings.api_token is None:
        return
    expected = settings.api_token.get_secret_value()
    if credentials is None or not secrets.compare_digest(credentials.credentials, expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int


def unprocessable(param: str, message: str, value: object) -> RequestValidationError:
    """A 422 in FastAPI's documented validation-error shape, naming the query parameter."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", param), "msg": message, "input": value}]
    )


async def time_range(
    start: Annotated[str, Query(description="inclusive; ISO 8601 or epoch ms (event time)")],
    end: Annotated[str, Query(description="exclusive; ISO 8601 or epoch ms (event time)")],
) -> TimeRange:
    parsed = {}
    for name, raw in (("start", start), ("end", end)):
        try:
            parsed[name] = parse_instant(raw, name)
        except ValueError as exc:
            raise unprocessable(name, str(exc), raw) from exc
        if not 0 <= parsed[name] <= MAX_CREATED_TIME_MS + 1:
            raise unprocessable(name, f"{name}: out of range (epoch ms 0 to year 9999)", raw)
    start_ms, end_ms = parsed["start"], parsed["end"]
    if end_ms <= start_ms:
        raise unprocessable("end", "end must be after start", end)
    return TimeRange(start_ms, end_ms)


RangeDep = Annotated[TimeRange, Depends(time_range)]


def check_points(span: TimeRange, granularity: Granularity) -> None:
    """Refuse a range with more windows of ``granularity`` than an answer may have."""
    points = -(-(span.end_ms - span.start_ms) // granularity.ms)
    if points > MAX_POINTS:
        raise unprocessable(
            "granularity",
            f"range too large for granularity {granularity.value}: {points} points "
            f"(at most {MAX_POINTS}); use a coarser granularity or a shorter range",
            granularity.value,
        )


async def series_range(
    span: RangeDep,
    granularity: Annotated[
        Granularity, Query(description="minute, hour or day")
    ] = Granularity.minute,
) -> tuple[TimeRange, Granularity]:
    check_points(span, granularity)
    return span, granularity


SeriesRangeDep = Annotated[tuple[TimeRange, Granularity], Depends(series_range)]
