"""The serving API over a real landing zone, real Spark batch views and a live speed store.

Answers must equal the ground truth for ranges before, after and across the batch horizon,
also while new batch versions are published (with speed rows expired right behind them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from batch_layer.pipeline import run_once
from batch_layer.versions import new_version_id
from infra.services import port_open
from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from serving.main import create_app
from tests.support.browser import ARTIFACTS
from tests.support.oracle import kept_rows
from tests.support.pipeline import (
    BIN,
    SpeedProcess,
    TruthRecord,
    env_for,
    expected_views,
    mixed_stream,
    produce,
    truth_rows,
    wait_caught_up,
    wait_sealed,
    wait_until,
)
from tests.support.ports import API_PORT
from tests.support.topic_settings import fresh_settings

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET_MS = 3000


@dataclass
class Platform:
    settings: Settings
    truth: list[TruthRecord]
    horizon_ms: int
    speed: SpeedProcess

    @property
    def views(self) -> dict[str, dict[tuple, tuple]]:
        return expected_views(self.truth)


@pytest.fixture(scope="module")
def platform(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("serving")
    settings = fresh_settings(
        broker,
        tmp / "data",
        bucket_ms=BUCKET_MS,
        landing_flush_ms=300,
        idle_seal_grace_ms=200,
        batch_keep_versions=1,
    )
    engine = make_engine(settings.speed_store_url)
    speed = SpeedProcess(settings).start()
    truth = produce(
        settings,
        tmp / "t1.jsonl",
        "--count",
        "3000",
        "--id-prefix",
        "a",
        *mixed_stream(1500, 30, late_max_hours=30),
    )
    wait_caught_up(settings, engine)
    horizon = wait_sealed(settings, truth)
    run_once(settings, new_version_id("first"), "first", horizon_ms=horizon)
    resend = tmp / "resend.jsonl"
    resend.write_bytes(b"\n".join([r.value for r in truth if r.kind == "valid"][:40]) + b"\n")
    truth += produce(
        settings,
        tmp / "t2.jsonl",
        "--count",
        "2000",
        "--id-prefix",
        "b",
        *mixed_stream(1500, 30, late_max_hours=30),
    )
    truth += produce(settings, tmp / "t3.jsonl", "--from-file", str(resend), "--rate", "0")
    wait_caught_up(settings, engine)
    yield Platform(settings, truth, horizon, speed)
    speed.terminate()


@pytest.fixture(scope="module")
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform.settings)) as c:
        yield c


def minute_filter(views: dict, view: str, start: int, end: int, account: str | None = None):
    for key, value in views[view].items():
        if account is not None and key[0] != account:
            continue
        if start <= key[-1] < end:
            yield key, value


def expected_summary(p: Platform, start: int, end: int, account: str | None = None) -> dict:
    view = "global_minute" if account is None else "account_minute"
    values = [v for _, v in minute_filter(p.views, view, start, end, account)]
    if not values:
        return {"count": 0, "sum": "0.00", "min": None, "max": None}
    return {
        "count": sum(v[0] for v in values),
        "sum": f"{Decimal(sum(v[1] for v in values)) / 100:.2f}",
        "min": f"{Decimal(min(v[2] for v in values)) / 100:.2f}",
        "max": f"{Decimal(max(v[3] for v in values)) / 100:.2f}",
    }


def expected_series(p: Platform, start: int, end: int, size: int, account: str | None = None):
    view = "global_minute" if account is None else "account_minute"
    buckets: dict[int, list[tuple]] = {}
    for key, value in minute_filter(p.views, view, start, end, account):
        buckets.setdefault(key[-1] - key[-1] % size, []).append(value)
    return [
        {
            "window_start_ms": w,
            "count": sum(v[0] for v in vs),
            "sum": f"{Decimal(sum(v[1] for v in vs)) / 100:.2f}",
        }
        for w, vs in sorted(buckets.items())
    ]


def ranges(p: Platform) -> dict[str, tuple[int, int]]:
    created = [k[-1] for k in p.views["global_minute"]]
    first, last = min(created), max(created) + 60_000
    h = p.horizon_ms - p.horizon_ms % 60_000
    return {
        "all": (first, last),
        "before": (first, h),
        "after": (h, last),
        "across": (h - 120_000, h + 120_000),
    }


def top_accounts(p: Platform, n: int = 3) -> list[str]:
    per: dict[str, int] = {}
    for key, value in p.views["account_minute"].items():
        per[key[0]] = per.get(key[0], 0) + value[1]
    return sorted(per, key=lambda a: (-per[a], a))[:n]


def test_answers_span_both_sides(client: TestClient, platform: Platform) -> None:
    meta = client.get(
        "/v1/totals", params=dict(zip(("start", "end"), ranges(platform)["all"], strict=True))
    ).json()["meta"]
    assert meta["events_from_batch"] > 0 and meta["events_from_speed"] > 0
    assert meta["batch_horizon_ms"] == platform.horizon_ms


@pytest.mark.parametrize("name", ["all", "before", "after", "across"])
def test_totals_summary_and_series_equal_ground_truth(
    client: TestClient, platform: Platform, name: str
) -> None:
    start, end = ranges(platform)[name]
    params = {"start": start, "end": end}
    totals = client.get("/v1/totals", params=params).json()
    expected = expected_summary(platform, start, end)
    assert (totals["count"], totals["sum"]) == (expected["count"], expected["sum"])
    for account in [*top_accounts(platform), "no-such-account"]:
        got = client.get(f"/v1/accounts/{account}/summary", params=params).json()
        want = expected_summary(platform, start, end, account)
        assert {k: got[k] for k in want} == want, account
    for granularity, size in (("minute", 60_000), ("hour", 3_600_000), ("day", 86_400_000)):
        series = client.get("/v1/totals/series", params={**params, "granularity": granularity})
        points = [
            {k: pt[k] for k in ("window_start_ms", "count", "sum")}
            for pt in series.json()["points"]
        ]
        assert points == expected_series(platform, start, end, size), granularity
    account = top_accounts(platform, 1)[0]
    series = client.get(f"/v1/accounts/{account}/series", params={**params, "granularity": "hour"})
    points = [
        {k: pt[k] for k in ("window_start_ms", "count", "sum")} for pt in series.json()["points"]
    ]
    assert points == expected_series(platform, start, end, 3_600_000, account)


def test_top_accounts_by_sum_and_count(client: TestClient, platform: Platform) -> None:
    start, end = ranges(platform)["all"]
    by_sum = client.get("/v1/top-accounts", params={"start": start, "end": end, "limit": 5}).json()
    assert [a["account_id"] for a in by_sum["accounts"]] == top_accounts(platform, 5)
    by_count = client.get(
        "/v1/top-accounts", params={"start": start, "end": end, "by": "count", "limit": 3}
    ).json()
    counts = {}
    for key, value in platform.views["account_minute"].items():
        counts[key[0]] = counts.get(key[0], 0) + value[0]
    want = sorted(counts, key=lambda a: (-counts[a], a))[:3]
    assert [(a["account_id"], a["count"]) for a in by_count["accounts"]] == [
        (a, counts[a]) for a in want
    ]


def oracle_rows(
    p: Platform,
    start: int,
    end: int,
    account: str | None = None,
    by_account: bool = False,
    size: int | None = None,
) -> dict[tuple, dict[str, Any]]:
    """What ``GET /v1/views/...`` must answer, by plain loops over the kept events: rows keyed
    by (account if grouped, window start if a granularity), events whose minute is in range."""
    amounts: dict[tuple, list[int]] = {}
    for row in kept_rows(truth_rows(p.truth)):
        minute = row["created_time"] - row["created_time"] % 60_000
        if not start <= minute < end:
            continue
        if account is not None and row["source_account_id"] != account:
            continue
        key = (row["source_account_id"],) if by_account else ()
        if size is not None:
            key += (minute - minute % size,)
        amounts.setdefault(key, []).append(row["amount_cents"])
    out = {}
    for key, values in amounts.items():
        row = {"SourceAccountID": key[0]} if by_account else {}
        if size is not None:
            row["window_start"] = key[-1]
        row.update(
            count=len(values),
            sum=f"{Decimal(sum(values)) / 100:.2f}",
            min=f"{Decimal(min(values)) / 100:.2f}",
            max=f"{Decimal(max(values)) / 100:.2f}",
        )
        out[key] = row
    return out


@pytest.mark.parametrize("name", ["all", "before", "after", "across"])
def test_views_route_equals_ground_truth(client: TestClient, platform: Platform, name: str) -> None:
    """The generic route over the built-in views: whole range, series, filters, grouping and
    top-N, each equal to the oracle, on ranges below, above and across the batch horizon."""
    start, end = ranges(platform)[name]
    span = {"start": start, "end": end}

    def rows(view: str, **params: Any) -> list[dict[str, Any]]:
        answer = client.get(f"/v1/views/{view}", params={**span, **params})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["view"] == view and body["version"] == body["meta"]["view_version"]
        return body["rows"]

    empty = {"count": 0, "sum": "0.00", "min": None, "max": None}
    assert rows("global_minute") == [oracle_rows(platform, start, end).get((), empty)]
    for account in [*top_accounts(platform, 2), "no-such-account"]:
        want = oracle_rows(platform, start, end, account).get((), empty)
        assert rows("account_minute", SourceAccountID=account) == [want], account
    for granularity, size in (("minute", 60_000), ("hour", 3_600_000), ("day", 86_400_000)):
        want_series = [v for _, v in sorted(oracle_rows(platform, start, end, size=size).items())]
        assert rows("global_minute", granularity=granularity, limit=10_080) == want_series
    account = top_accounts(platform, 1)[0]
    hourly = oracle_rows(platform, start, end, account, size=3_600_000)
    got = rows("account_minute", SourceAccountID=account, granularity="hour")
    assert got == [v for _, v in sorted(hourly.items())]

    per_account = oracle_rows(platform, start, end, by_account=True)
    for measure in ("sum", "count", "max"):
        ranked = sorted(per_account.items(), key=lambda kv: (-Decimal(str(kv[1][measure])), kv[0]))
        got = rows("account_minute", group_by="SourceAccountID", order_by=measure, limit=5)
        assert got == [v for _, v in ranked[:5]], measure
    both = oracle_rows(platform, start, end, by_account=True, size=86_400_000)
    answer = client.get(
        "/v1/views/account_minute",
        params={**span, "group_by": "SourceAccountID", "granularity": "day", "limit": 10_080},
    ).json()
    assert answer["rows"] == [v for _, v in sorted(both.items())]
    meta = answer["meta"]
    assert meta["rows_total"] == len(both)
    assert meta["events_from_batch"] + meta["events_from_speed"] == sum(
        v["count"] for v in both.values()
    )


def test_views_are_listed_with_their_definitions(client: TestClient, platform: Platform) -> None:
    listed = {v["name"]: v for v in client.get("/v1/views").json()["views"]}
    assert set(listed) == {"account_minute", "global_minute"}
    account = listed["account_minute"]
    assert account["definition"]["dimensions"] == ["SourceAccountID"]
    assert account["definition"]["window"] == "minute"
    assert account["state"] == "serving" and account["horizon_ms"] >= platform.horizon_ms
    assert listed["global_minute"]["definition"]["dimensions"] == []
    assert account["version"] != listed["global_minute"]["version"]


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/v1/views/no_such_view", {"start": "0", "end": "1"}, 404, "account_minute"),
        (
            "/v1/views/global_minute",
            {"start": "0", "end": "1000", "SourceAccountID": "a"},
            422,
            "unknown parameter 'SourceAccountID' for view global_minute",
        ),
        (
            "/v1/views/account_minute",
            {"start": "0", "end": "1000", "group_by": "TargetAccountID"},
            422,
            "SourceAccountID",
        ),
        (
            "/v1/views/account_minute",
            {"start": "0", "end": "1000", "order_by": "avg"},
            422,
            "order_by",
        ),
        (
            "/v1/views/account_minute",
            {"start": "0", "end": str(30 * 86_400_000), "granularity": "minute"},
            422,
            "range too large for granularity minute",
        ),
        ("/v1/views/account_minute", {"start": "5", "end": "1"}, 422, "end must be after"),
        ("/v1/views/account_minute", {"start": "0", "end": "1", "limit": "0"}, 422, "limit"),
    ],
)
def test_views_route_refuses_bad_queries_with_the_reason(
    client: TestClient, path: str, params: dict[str, str], status: int, message: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert message in response.text


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/v1/totals", {"start": "yesterday", "end": "1"}, "start: 'yesterday' is neither"),
        ("/v1/totals", {"start": "2000", "end": "1000"}, "end must be after start"),
        ("/v1/totals", {"start": "1000", "end": "1000"}, "end must be after start"),
        (
            "/v1/totals/series",
            {"start": "0", "end": str(30 * 86_400_000), "granularity": "minute"},
            "range too large for granularity minute",
        ),
        ("/v1/totals/series", {"start": "0", "end": "1000", "granularity": "week"}, "minute"),
        ("/v1/top-accounts", {"start": "0", "end": "1000", "limit": "0"}, "greater than"),
        ("/v1/top-accounts", {"start": "0", "end": "1000", "limit": "5000"}, "less than"),
        ("/v1/totals", {"start": "0"}, "end"),
        # Longer than the contract's TransactionID/account limit (128): no account has it.
        ("/v1/accounts/" + "a" * 129 + "/summary", {"start": "0", "end": "1000"}, "128"),
    ],
)
def test_bad_input_is_422_with_a_clear_message(
    client: TestClient, path: str, params: dict[str, str], message: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert message in response.text


def test_freshness_and_operations(client: TestClient, platform: Platform) -> None:
    fresh = client.get("/v1/freshness").json()
    assert fresh["batch_horizon_ms"] == platform.horizon_ms
    assert fresh["landing_watermark_ms"] >= platform.horizon_ms
    assert [p["lag"] for p in fresh["speed_lag"]] == [0] * platform.settings.partitions
    assert fresh["last_batch_run"]["drift_events"] == 0
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    metrics = client.get("/metrics").text
    assert "serving_request_seconds_bucket" in metrics
    assert 'serving_merged_events_total{side="speed"}' in metrics
    assert client.get("/docs").status_code == 200


def test_bearer_token_when_configured(platform: Platform) -> None:
    settings = platform.settings.model_copy(update={"api_token": SecretStr("s3cret")})
    with TestClient(create_app(settings)) as secured:
        params = {"start": "0", "end": "1000"}
        assert secured.get("/v1/totals", params=params).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert secured.get("/v1/totals", params=params, headers=wrong).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert secured.get("/v1/totals", params=params, headers=ok).status_code == 200
        assert secured.get("/healthz").status_code == 200


def test_publishing_during_queries_never_loses_or_doubles(
    client: TestClient, platform: Platform
) -> None:
    """batch_keep_versions=1: each publish expires speed rows right below its horizon."""
    settings = platform.settings
    horizon = wait_sealed(settings, platform.truth)
    start, end = ranges(platform)["all"]
    expected = expected_summary(platform, start, end)
    answers: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def publish_twice() -> None:
        try:
            for i in range(2):
                run_once(settings, new_version_id(f"during-{i}"), f"during-{i}", horizon_ms=horizon)
        except BaseException as exc:  # reported to the main thread
            failures.append(exc)
        finally:
            done.set()

    publisher = threading.Thread(target=publish_twice)
    publisher.start()
    while not done.is_set():
        answers.append(client.get("/v1/totals", params={"start": start, "end": end}).json())
    publisher.join()
    assert not failures, failures
    versions = {a["meta"]["batch_version"] for a in answers}
    assert len(versions) >= 2, "no publish happened during the queries"
    for answer in answers:
        assert (answer["count"], answer["sum"]) == (expected["count"], expected["sum"]), answer
    assert Layout.of(settings).read_current().horizon_ms == horizon


# --- over real HTTP: a uvicorn server started like `make up` starts it ---------------------


@pytest.fixture(scope="module")
def server(platform: Platform) -> Iterator[str]:
    """``lambda-serve`` over HTTP, stopped however its set-up or the tests end (a server left
    running would answer the next run's requests on the same port)."""
    assert not port_open("127.0.0.1", API_PORT), f"port {API_PORT} is taken: a leftover server?"
    env = env_for(platform.settings, LAMBDA_API_PORT=str(API_PORT))
    log = (platform.settings.data_dir / "serving.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "lambda-serve")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its uvicorn workers go with it
    )
    base = f"http://127.0.0.1:{API_PORT}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 60, "the API server")
        yield base
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:  # set-up failed, or it did not stop: no server outlives this
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert code in (0, -signal.SIGTERM)
    assert (
        "Application shutdown complete" in (platform.settings.data_dir / "serving.log").read_text()
    )


def healthz_count(server: str) -> float:
    """Requests to /healthz answered 200, as /metrics reports them."""
    for line in httpx.get(f"{server}/metrics").text.splitlines():
        labels = 'route="/healthz"' in line and 'status="200"' in line
        if line.startswith("serving_request_seconds_count{") and labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_over_http_count_every_workers_requests(server: str) -> None:
    """lambda-serve runs LAMBDA_API_WORKERS processes (2 by default) on one socket; whichever
    answers /metrics reports the requests all of them served."""
    before = healthz_count(server)
    for _ in range(30):
        assert httpx.get(f"{server}/healthz").status_code == 200  # a new connection each
    assert healthz_count(server) - before >= 30


def test_openapi_contract_no_5xx_and_schema_conformance(server: str) -> None:
    """schemathesis generates requests from /openapi.json; none may 5xx or break the schema."""
    result = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{server}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            "30",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def merge_panel(tab: Page) -> dict[str, Any]:
    """What the merge panel shows, read at once (it redraws every few seconds): its range
    and version, and per window (epoch ms) the batch part, the speed part and the total."""
    shown = tab.evaluate(
        """() => {
          const panel = document.getElementById("merge");
          const rows = [...document.querySelectorAll("#merge-rows tbody tr")].map((tr) =>
            [Number(tr.dataset.window), ...["batch", "speed", "count"].map(
              (c) => Number(tr.querySelector(`td.${c}`).textContent))]);
          return { ...panel.dataset, rows };
        }"""
    )
    shown["rows"] = [[int(v) for v in row] for row in shown["rows"]]
    return shown


def merge_answer(server: str, shown: dict[str, Any]) -> dict[str, Any]:
    """The API's answer for the range the panel shows, in the panel's terms."""
    params = {k: shown[k] for k in ("start", "end", "granularity")}
    body = httpx.get(f"{server}/v1/totals/merge", params=params, timeout=30).json()
    rows = [
        [p["window_start_ms"], p["batch"]["count"], p["speed"]["count"], p["count"]]
        for p in body["points"]
    ]
    return {"version": body["meta"]["batch_version"], "rows": rows}


def test_dashboard_renders_live_data_in_a_real_browser(tab: Page, server: str) -> None:
    requests: list[str] = []
    tab.on("request", lambda r: requests.append(r.url))
    tab.goto(server + "/")
    tab.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert tab.locator("#merge-chart canvas").count() == 1  # uPlot drew the merge
    assert tab.locator("#merge-rows tbody tr").count() > 0
    assert tab.locator("#top tbody tr").count() > 0
    assert tab.locator("#runs-rows tbody tr").count() > 0  # the fixture's publishes
    assert "batch version v" in tab.inner_text("#freshness")
    tab.wait_for_selector("body[data-views-loaded=true]", timeout=20_000)
    options = tab.locator("#view-select option").all_inner_texts()
    assert {"account_minute", "global_minute"} <= set(options)
    tab.select_option("#view-select", "account_minute")
    tab.wait_for_selector("#view-rows th:text-is('SourceAccountID')", timeout=20_000)
    assert tab.locator("#view-rows tbody tr").count() > 0
    assert "answered by version" in tab.inner_text("#view-meta")
    tab.select_option("#view-select", "global_minute")
    tab.wait_for_selector("#view-rows th:text-is('window_start')", timeout=20_000)
    tab.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert all(url.startswith(server) for url in requests), "the dashboard must work offline"


def utc_minute(ms: int) -> str:
    """A minute as a datetime-local input takes it (the page reads it as UTC)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")


def test_explore_panel_answers_as_the_api(tab: Page, server: str, platform: Platform) -> None:
    """An account, a range and a granularity entered on the page: its rows and meta are the
    API's answer to the same query."""
    first, last = ranges(platform)["all"]
    account = top_accounts(platform, 1)[0]
    tab.goto(server + "/")
    tab.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    tab.wait_for_selector(
        "#explore-view option[value=account_minute]", state="attached", timeout=20_000
    )
    tab.select_option("#explore-view", "account_minute")
    tab.fill("#explore-key-SourceAccountID", account)
    tab.fill("#explore-start", utc_minute(first - first % 3_600_000))
    tab.fill("#explore-end", utc_minute(last - last % 3_600_000 + 3_600_000))
    tab.select_option("#explore-granularity", "hour")
    assert tab.locator("#explore-granularity option[value=minute]").is_enabled()
    tab.click("#explore-form button")
    tab.wait_for_function(
        "document.getElementById('explore').dataset.status === '200' && "
        f"document.getElementById('explore').dataset.query.includes({account!r})",
        timeout=20_000,
    )
    shown = tab.evaluate(
        """() => ({
          query: document.getElementById("explore").dataset.query,
          head: [...document.querySelectorAll("#explore-rows th")].map((th) => th.textContent),
          rows: [...document.querySelectorAll("#explore-rows tbody tr")].map(
            (tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)),
          meta: document.getElementById("explore-meta").innerText,
        })"""
    )
    tab.screenshot(path=str(ARTIFACTS / "dashboard-explore.png"), full_page=True)
    body = httpx.get(f"{server}/v1/views/account_minute?{shown['query']}", timeout=30).json()
    assert body["rows"] and shown["head"] == list(body["rows"][0])
    want = [
        [utc_minute(v).replace("T", " ") if k == "window_start" else str(v) for k, v in r.items()]
        for r in body["rows"]
    ]
    assert shown["rows"] == want
    assert sum(int(r[shown["head"].index("count")]) for r in shown["rows"]) == sum(
        v[0] for k, v in platform.views["account_minute"].items() if k[0] == account
    )
    m = body["meta"]
    assert (
        f"{m['events_from_batch']} from batch + {m['events_from_speed']} from speed"
        in (shown["meta"])
    )
    assert m["batch_version"] in shown["meta"]


def test_merge_panel_turns_speed_parts_into_batch_parts_on_publish(
    tab: Page, server: str, platform: Platform, tmp_path: Path
) -> None:
    """Fresh events show as speed parts; after a batch run publishes past them they are batch
    parts, every window's total unchanged, and the page equals the API's answer each time."""
    settings = platform.settings
    fresh = produce(
        settings, tmp_path / "fresh.jsonl", "--count", "300", "--id-prefix", "m",
        "--rate", "300", "--accounts", "10",
    )  # fmt: skip
    platform.truth += fresh
    engine = make_engine(settings.speed_store_url)
    wait_caught_up(settings, engine)
    engine.dispose()
    tab.goto(server + "/")
    tab.wait_for_function(
        "[...document.querySelectorAll('#merge-rows td.speed')]"
        ".reduce((n, td) => n + Number(td.textContent), 0) >= 300",
        timeout=30_000,
    )
    before = merge_panel(tab)
    assert merge_answer(server, before) == {
        "version": before["version"],
        "rows": before["rows"],
    }
    tab.screenshot(path=str(ARTIFACTS / "dashboard-merge-before.png"), full_page=True)

    horizon = wait_sealed(settings, fresh)
    version = new_version_id("merge-panel")
    run_once(settings, version, "merge-panel", horizon_ms=horizon)
    tab.wait_for_function(
        f"document.getElementById('merge').dataset.version === {version!r}", timeout=60_000
    )
    after = merge_panel(tab)
    # The batch-runs panel lists the run once its publish is recorded (after CURRENT moved).
    tab.wait_for_function(
        f"document.querySelector('#runs-rows tbody tr')?.dataset.version === {version!r}",
        timeout=30_000,
    )
    newest = tab.locator("#runs-rows tbody tr").first
    assert newest.locator("td.version").inner_text().startswith("★")
    # The time panel marks the publish over its samples of the last hour.
    tab.wait_for_function(
        f"document.getElementById('time').dataset.publishes?.split(' ').includes({version!r})"
        " && Number(document.getElementById('time').dataset.samples) > 0",
        timeout=30_000,
    )
    assert int(after["horizon"]) == horizon > int(before["horizon"])
    assert merge_answer(server, after) == {"version": version, "rows": after["rows"]}
    tab.screenshot(path=str(ARTIFACTS / "dashboard-merge-after.png"), full_page=True)

    was = {w: (b, s, total) for w, b, s, total in before["rows"]}
    now = {w: (b, s, total) for w, b, s, total in after["rows"]}
    common = was.keys() & now.keys()  # a minute may have left the range meanwhile
    assert common
    assert all(now[w][2] == was[w][2] for w in common), "a total changed on publish"
    assert all(now[w][1] == 0 for w in now), "every event is below the new horizon"
    assert sum(now[w][0] for w in common) - sum(was[w][0] for w in common) == sum(
        was[w][1] for w in common
    ), "the speed parts did not become batch parts"


def test_api_docs_render_offline_in_a_real_browser(tab: Page, server: str) -> None:
    """/docs and /redoc render with every request to another host refused (as offline)."""
    elsewhere: list[str] = []

    def same_host_only(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    tab.route("**/*", same_host_only)
    tab.goto(server + "/docs")
    summary = tab.locator('.opblock-summary-path[data-path="/v1/accounts/{account_id}/summary"]')
    summary.wait_for(state="visible", timeout=20_000)
    assert tab.locator(".opblock").count() >= 8
    tab.screenshot(path=str(ARTIFACTS / "docs-swagger-ui.png"), full_page=True)

    tab.goto(server + "/redoc")
    title = tab.locator("h1", has_text="Lambda platform serving API")
    title.wait_for(state="visible", timeout=20_000)
    tab.locator("h2", has_text="Account Summary").first.wait_for(state="visible")
    tab.screenshot(path=str(ARTIFACTS / "docs-redoc.png"), full_page=True)
    assert not elsewhere, f"the docs requested other hosts: {elsewhere}"
