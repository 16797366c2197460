"""Declared views end to end: a views file, a real broker, the speed process, Spark, serving.

A platform with history gets views from its views file: they answer 409 while building and,
once the speed layer computes them from their deploy on and a batch version holds them with a
horizon past the deploy, exactly over all history (duplicates, late events, a published batch
below and speed rows above), equal to a plain reference over the acknowledged records. A view
added later to a running platform (a restart of the speed process on the new file) does the
same, and a process still holding the old file stops instead of writing. A speed process and
``spark-submit`` killed while the views build change nothing, and a changed view answers from
its previous version until the new one serves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from batch_layer.pipeline import run_once
from batch_layer.versions import new_version_id
from lambda_contracts.db import make_engine
from lambda_contracts.settings import Settings
from lambda_contracts.view_declarations import load_declarations
from serving.main import create_app
from tests.support.declared import WINDOW_MS, reference, rendered
from tests.support.oracle import kept_rows
from tests.support.pipeline import (
    SpeedProcess,
    TruthRecord,
    kill_recompute_mid_write,
    mixed_stream,
    produce,
    truth_rows,
    wait_caught_up,
    wait_sealed,
    wait_until,
)
from tests.support.topic_settings import fresh_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET_MS = 3000
FIRST = """
[[views]]
name = "received_hourly"
dimensions = ["TargetAccountID"]
window = "hour"
measures = ["count", "sum", "min", "max", "distinct(SourceAccountID)"]

[[views]]
name = "large_daily"
dimensions = []
window = "day"
measures = ["count", "sum", "distinct(TargetAccountID)"]
amount_min = "2000.00"
"""
CHANGED_FROM = 'measures = ["count", "sum", "min", "max", "distinct(SourceAccountID)"]'
CHANGED_TO = 'measures = ["count", "sum", "distinct(SourceAccountID)"]\namount_min = "100.00"'
ADDED = """
[[views]]
name = "pairs_minute"
dimensions = ["SourceAccountID", "TargetAccountID"]
window = "minute"
measures = ["count", "max"]
amount_max = "4000.00"
"""


def expected(
    views_file: Path, name: str, truth: list[TruthRecord], start: int, end: int, **query: Any
) -> list[dict[str, Any]]:
    """What ``GET /v1/views/<name>`` must answer, from the reference over the kept events
    whose window of the view starts in [start, end) (a range is resolved to whole windows)."""
    declaration = load_declarations(views_file).by_name()[name]
    window = WINDOW_MS[declaration.window]
    rows = [
        r
        for r in kept_rows(truth_rows(truth))
        if start <= r["created_time"] - r["created_time"] % window < end
    ]
    group = query.get("group_by")
    size = WINDOW_MS.get(query.get("granularity", ""))
    ref = reference(declaration, rows, (group,) if group else (), size)
    answer = []
    for key, row in sorted(ref.items()):
        out: dict[str, Any] = {group: key[0]} if group else {}
        if size:
            out["window_start"] = key[-1]
        answer.append({**out, **rendered(declaration.measures, row)})
    return answer


@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    tmp = tmp_path_factory.mktemp("declared")
    views_file = tmp / "views.toml"
    settings = fresh_settings(
        broker,
        tmp / "data",
        bucket_ms=BUCKET_MS,
        landing_flush_ms=300,
        idle_seal_grace_ms=200,
        views_file=views_file,
    )
    yield settings, views_file
    SpeedProcess.kill_started_after(0)


def test_declared_views_build_switch_and_answer_exactly(
    stack: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, views_file = stack
    engine = make_engine(settings.speed_store_url or "")
    # History before any declared view: counted by speed and by a published batch version.
    history = SpeedProcess(settings).start()
    truth = produce(
        settings, tmp_path / "t0.jsonl", "--count", "1500", "--id-prefix", "h",
        *mixed_stream(1500, 12, late_max_hours=30),
    )  # fmt: skip
    wait_caught_up(settings, engine)
    run_once(
        settings, new_version_id("history"), "history", horizon_ms=wait_sealed(settings, truth)
    )
    history.terminate()

    # The views file appears; the speed process restarts on it (what make deploy does).
    views_file.write_text(FIRST)
    speed = SpeedProcess(settings).start()
    truth += produce(
        settings, tmp_path / "t1.jsonl", "--count", "1500", "--id-prefix", "a",
        *mixed_stream(1500, 12, late_max_hours=30),
    )  # fmt: skip
    wait_caught_up(settings, engine)
    with TestClient(create_app(settings)) as client:
        span = {"start": 0, "end": 4 * 10**12}
        building = client.get("/v1/views/received_hourly", params=span)
        assert building.status_code == 409, building.text
        assert building.json()["state"] == "building"
        listed = {v["name"]: v for v in client.get("/v1/views").json()["views"]}
        assert listed["received_hourly"]["state"] == "building"
        assert listed["account_minute"]["state"] == "serving"

    # Faults while the views build: a speed process and spark-submit killed (SIGKILL).
    speed.kill()
    speed = SpeedProcess(settings).start()
    truth += produce(
        settings, tmp_path / "t1b.jsonl", "--count", "400", "--id-prefix", "k",
        *mixed_stream(1500, 12, late_max_hours=30),
    )  # fmt: skip
    wait_caught_up(settings, engine)
    horizon = wait_sealed(settings, truth)
    kill_recompute_mid_write(settings, horizon, new_version_id("killed"))
    run_once(settings, new_version_id("first"), "first", horizon_ms=horizon)
    truth += produce(
        settings, tmp_path / "t2.jsonl", "--count", "800", "--id-prefix", "b",
        *mixed_stream(1500, 12, late_max_hours=30),
    )  # fmt: skip
    wait_caught_up(settings, engine)
    with TestClient(create_app(settings)) as client:
        _assert_exact(client, views_file, truth, "received_hourly", "TargetAccountID")
        _assert_exact(client, views_file, truth, "large_daily", None)
        meta = client.get("/v1/views/received_hourly", params=span).json()["meta"]
        assert meta["events_from_batch"] > 0 and meta["events_from_speed"] > 0

    # A view added to the running platform: the old process stops, its successor deploys.
    views_file.write_text(FIRST + ADDED)
    added = SpeedProcess(settings).start()
    truth += produce(
        settings, tmp_path / "t3.jsonl", "--count", "600", "--id-prefix", "c",
        *mixed_stream(1500, 12, late_max_hours=30),
    )  # fmt: skip
    wait_until(lambda: not speed.alive(), 60, "the speed process on the old views file to stop")
    assert "views redeployed" in speed.log_path.read_text()
    wait_caught_up(settings, engine)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/views/pairs_minute", params=span).status_code == 409
        _assert_exact(client, views_file, truth, "received_hourly", "TargetAccountID")
    run_once(settings, new_version_id("added"), "added", horizon_ms=wait_sealed(settings, truth))
    with TestClient(create_app(settings)) as client:
        _assert_exact(client, views_file, truth, "pairs_minute", "SourceAccountID")
        _assert_exact(client, views_file, truth, "large_daily", None)

    # A view changed: its previous version answers, exactly, until the new one serves.
    before = tmp_path / "before.toml"
    before.write_text(FIRST + ADDED)
    views_file.write_text((FIRST + ADDED).replace(CHANGED_FROM, CHANGED_TO))
    old_version = load_declarations(before).by_name()["received_hourly"].version
    new_version = load_declarations(views_file).by_name()["received_hourly"].version
    changed = SpeedProcess(settings).start()
    truth += produce(
        settings, tmp_path / "t4.jsonl", "--count", "600", "--id-prefix", "d",
        *mixed_stream(1500, 12, late_max_hours=30),
    )  # fmt: skip
    wait_until(lambda: not added.alive(), 60, "the speed process on the old views file to stop")
    wait_caught_up(settings, engine)
    with TestClient(create_app(settings)) as client:
        answer = client.get("/v1/views/received_hourly", params=span).json()
        assert answer["version"] == old_version != new_version
        _assert_exact(client, before, truth, "received_hourly", "TargetAccountID")
        listed = [
            v for v in client.get("/v1/views").json()["views"] if v["name"] == "received_hourly"
        ]
        states = {v["version"]: (v["state"], v["answering"]) for v in listed}
        assert states == {new_version: ("building", False), old_version: ("retiring", True)}
    run_once(
        settings, new_version_id("changed"), "changed", horizon_ms=wait_sealed(settings, truth)
    )
    with TestClient(create_app(settings)) as client:
        answer = client.get("/v1/views/received_hourly", params=span).json()
        assert answer["version"] == new_version
        _assert_exact(client, views_file, truth, "received_hourly", "TargetAccountID")
    changed.terminate()


def _assert_exact(
    client: TestClient, views_file: Path, truth: list[TruthRecord], name: str, dim: str | None
) -> None:
    """The view's answers equal the reference: whole range, by day, grouped, in a sub-range."""
    created = [r["created_time"] for r in truth_rows(truth)]
    lo, hi = min(created) - min(created) % 60_000, max(created) + 60_000
    middle = lo + (hi - lo) // 3
    for start, end in ((lo, hi), (middle, hi), (lo, middle)):
        span = {"start": start, "end": end}
        queries: list[dict[str, Any]] = [{}, {"granularity": "day"}]
        if dim:
            queries.append({"group_by": dim, "limit": 10_080})
        for query in queries:
            answer = client.get(f"/v1/views/{name}", params={**span, **query, "limit": 10_080})
            assert answer.status_code == 200, answer.text
            want = expected(views_file, name, truth, start, end, **query)
            if not query:
                want = want or [answer.json()["rows"][0]]  # over no events: the empty row
            assert answer.json()["rows"] == want, (name, span, query)
