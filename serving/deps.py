"""Typed dependencies: settings, the query service, validated time ranges, optional auth."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lambda_contracts.events import MAX_CREATED_TIME_MS
from lambda_contracts.settings import Settings
from serving.queries import Granularity, QueryService
from serving.timeparse import parse_instant

MAX_POINTS = 10_080  # a week of minutes, ~14 months of hours, ~27 years of days


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_queries(request: Request) -> QueryService:
    return request.app.state.queries


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
QueriesDep = Annotated[QueryService, Depends(get_queries)]

_bearer = HTTPBearer(auto_error=False)


def require_token(
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


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(422, message)


def time_range(
    start: Annotated[str, Query(description="inclusive; ISO 8601 or epoch ms (event time)")],
    end: Annotated[str, Query(description="exclusive; ISO 8601 or epoch ms (event time)")],
) -> TimeRange:
    try:
        start_ms, end_ms = parse_instant(start, "start"), parse_instant(end, "end")
    except ValueError as exc:
        raise _unprocessable(str(exc)) from exc
    for name, value in (("start", start_ms), ("end", end_ms)):
        if not 0 <= value <= MAX_CREATED_TIME_MS + 1:
            raise _unprocessable(f"{name}: out of range")
    if end_ms <= start_ms:
        raise _unprocessable("end must be after start")
    return TimeRange(start_ms, end_ms)


RangeDep = Annotated[TimeRange, Depends(time_range)]


def series_range(
    span: RangeDep,
    granularity: Annotated[
        Granularity, Query(description="minute, hour or day")
    ] = Granularity.minute,
) -> tuple[TimeRange, Granularity]:
    points = -(-(span.end_ms - span.start_ms) // granularity.ms)
    if points > MAX_POINTS:
        raise _unprocessable(
            f"range too large for granularity {granularity.value}: {points} points "
            f"(at most {MAX_POINTS}); use a coarser granularity or a shorter range"
        )
    return span, granularity


SeriesRangeDep = Annotated[tuple[TimeRange, Granularity], Depends(series_range)]
