"""Each window's split into its batch part and its speed part (``/v1/totals/merge``, the
dashboard's merge panel) against plain loops over the events: the batch part is the version's
own events, the speed part every event ingested at or after its horizon, and the two add up
to the window's answer, on either version and at any granularity."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from serving.main import create_app
from serving.queries import Granularity, QueryService
from tests.support.two_versions import (
    BATCH,
    EVENTS,
    HORIZON,
    RANGES,
    Event,
    oracle,
    publish,
    series_of,
    served_versions,
    switched,
)


def in_range(events: list[Event], start: int, end: int) -> list[Event]:
    return [e for e in events if start <= e.created - e.created % 60_000 < end]


def by_window(events: list[Event], size: int) -> dict[int, dict[str, int]]:
    return dict(series_of(events, size))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Settings, QueryService]]:
    with served_versions(tmp_path) as both:
        yield both


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_each_window_splits_into_the_sides_it_came_from(served, version: str) -> None:  # type: ignore[no-untyped-def]
    settings, queries = served
    publish(Layout.of(settings), version)
    switched(queries, version)
    speed_events = [e for e in EVENTS if e.ingest >= HORIZON[version]]
    for start, end in RANGES:
        for granularity in Granularity:
            size = granularity.ms
            want_total = by_window(oracle(version, start, end, None), size)
            want_batch = by_window(in_range(BATCH[version], start, end), size)
            want_speed = by_window(in_range(speed_events, start, end), size)
            snap, windows = queries.consistent(
                lambda s, g=granularity, r=(start, end): queries.series_by_side(s, *r, g)
            )
            assert snap.pointer is not None and snap.pointer.version == version
            assert [w for w, *_ in windows] == sorted(want_total)
            for window, merged, batch, speed in windows:
                assert merged == want_total[window]
                assert batch == want_batch.get(window)
                assert speed == want_speed.get(window)
    # Late events: some window before the horizon has both parts (the split is not by time).
    assert any(b and s for _, _, b, s in windows)


def test_the_route_renders_parts_that_add_up(tmp_path: Path) -> None:
    with served_versions(tmp_path) as (settings, _):
        publish(Layout.of(settings), "v1")
    start, end = RANGES[2]
    with TestClient(create_app(settings)) as client:
        client.app.state.end_offsets.get = lambda: None  # type: ignore[attr-defined]
        answer = client.get(
            "/v1/totals/merge", params={"start": start, "end": end, "granularity": "minute"}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    want = by_window(oracle("v1", start, end, None), 60_000)
    assert [p["window_start_ms"] for p in body["points"]] == sorted(want)
    for p in body["points"]:
        expected = want[p["window_start_ms"]]
        assert p["count"] == p["batch"]["count"] + p["speed"]["count"] == expected["count"]
        parts = Decimal(p["batch"]["sum"]) + Decimal(p["speed"]["sum"])
        assert parts == Decimal(p["sum"]) == Decimal(expected["sum"]) / 100
    assert body["meta"]["batch_horizon_ms"] == HORIZON["v1"]
    assert sum(p["batch"]["count"] for p in body["points"]) == body["meta"]["events_from_batch"]
