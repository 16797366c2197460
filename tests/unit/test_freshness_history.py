"""The time panel's history: a ring of one hour whatever the rate, sampled in the background
by each serving worker, a failed sample skipped; ``/v1/freshness/history`` answers the ring
and the hour's publishes from the speed store."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from lambda_contracts.db import make_engine
from lambda_contracts.layout import BatchPointer, Layout
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import batch_runs, metadata
from serving.history import History, Sample
from serving.main import create_app
from tests.support.versions import put_counted_version

BUCKET = 60_000


def sample(at_ms: int) -> Sample:
    return Sample(at_ms, at_ms - 1, at_ms - 2, at_ms - 3, {0: 1})


def test_the_ring_holds_one_hour_of_samples() -> None:
    history = History(lambda: sample(0), sample_s=5.0)
    for i in range(2000):
        history.samples.append(sample(i))
    assert len(history.samples) == 720  # an hour at 5 s
    assert [s.at_ms for s in history.recent(1990)] == list(range(1990, 2000))


def test_the_sampler_skips_a_failed_sample_and_stops_when_cancelled() -> None:
    calls: list[int] = []

    def take() -> Sample:
        calls.append(len(calls))
        if len(calls) == 2:
            raise OSError("the store is busy")
        return sample(len(calls))

    async def run_briefly() -> None:
        history = History(take, sample_s=0.01)
        task = asyncio.create_task(history.run())
        while len(calls) < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        assert [s.at_ms for s in history.samples][:3] == [1, 3, 4]

    # On a thread of its own: pytest-playwright's Playwright holds the main thread's event loop
    # for the session once a browser test ran (tests/conftest.py).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run_briefly()).result(timeout=60)


def test_the_route_answers_the_samples_and_the_hours_publishes(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, partitions=2, bucket_ms=BUCKET, api_history_sample_s=0.05
    )
    layout = Layout.of(settings)
    put_counted_version(layout, "v1", 2 * BUCKET, BUCKET, 5, 5)
    now = int(time.time() * 1000)
    assert layout.swap_current(BatchPointer("v1", 2 * BUCKET, now), None)
    engine = make_engine(settings.speed_store_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            batch_runs.insert(),
            [
                {"version": v, "horizon_ms": h, "previous_horizon_ms": 0, "published_at_ms": at,
                 "batch_events": 5}
                for v, h, at in (("v0", BUCKET, now - 2 * 3_600_000), ("v1", 2 * BUCKET, now))
            ],
        )  # fmt: skip
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        client.app.state.end_offsets.get = lambda: None  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while len((body := client.get("/v1/freshness/history").json())["samples"]) < 3:
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
    assert body["sample_s"] == 0.05
    last = body["samples"][-1]
    assert last["batch_horizon_ms"] == 2 * BUCKET
    assert last["lag"] == {"0": None, "1": None}  # no broker: unknown, not zero
    assert [p["version"] for p in body["publishes"]] == ["v1"]  # v0 is older than the hour
