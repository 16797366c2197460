"""The Airflow client waits out what is transient (a DAG not parsed yet, a 500 while Airflow's
SQLite database is held, a dropped connection) and fails on what is not. The HTTP exchanges
are scripted with httpx's transport; the real API is driven by the chaos run and `make batch`."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from infra import trigger_batch
from infra.trigger_batch import AirflowClient, RunProgress, TaskView

Answer = Callable[[httpx.Request], httpx.Response]


def client_with(answers: dict[tuple[str, str], list[int]], retry_s: float = 60) -> AirflowClient:
    """A client whose calls get the scripted status codes in turn (the last one repeats)."""
    calls: dict[tuple[str, str], int] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        key = (request.method, request.url.path)
        n = calls.get(key, 0)
        calls[key] = n + 1
        codes = answers[key]
        code = codes[min(n, len(codes) - 1)]
        if code == 0:
            raise httpx.ConnectError("connection refused", request=request)
        body = {"access_token": "t", "dag_run_id": "run-1", "state": "success"}
        return httpx.Response(code, json=body)

    original = httpx.Client

    def scripted(*args: object, **kwargs: object) -> httpx.Client:
        return original(*args, transport=httpx.MockTransport(handle), **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trigger_batch.httpx, "Client", scripted)
        return AirflowClient("http://airflow", "pw", retry_s=retry_s)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trigger_batch.time, "sleep", lambda _s: None)


def test_a_trigger_waits_out_500s_an_unparsed_dag_and_a_dropped_connection() -> None:
    client = client_with(
        {
            ("POST", "/auth/token"): [0, 200],
            ("GET", "/api/v2/dags/lambda_batch"): [404, 404, 500, 200],
            ("PATCH", "/api/v2/dags/lambda_batch"): [500, 503, 200],
            ("POST", "/api/v2/dags/lambda_batch/dagRuns"): [500, 200],
        }
    )
    assert client.trigger("lambda_batch") == "run-1"


def test_a_client_error_is_not_retried() -> None:
    client = client_with(
        {
            ("POST", "/auth/token"): [200],
            ("GET", "/api/v2/dags/lambda_batch"): [200],
            ("PATCH", "/api/v2/dags/lambda_batch"): [403, 200],
            ("POST", "/api/v2/dags/lambda_batch/dagRuns"): [200],
        }
    )
    with pytest.raises(httpx.HTTPStatusError, match="403"):
        client.trigger("lambda_batch")


def test_a_lasting_server_error_fails_after_the_retry_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = client_with(
        {("POST", "/auth/token"): [200], ("GET", "/api/v2/dags/x/dagRuns/r"): [500]}
    )
    clock = iter(range(0, 10_000, 10))  # each look at the clock: 10 s later
    monkeypatch.setattr(trigger_batch.time, "monotonic", lambda: float(next(clock)))
    client.retry_s = 60
    with pytest.raises(httpx.HTTPStatusError, match="500"):
        client.run_state("x", "r")


def test_progress_says_each_change_once_with_tries_and_durations() -> None:
    progress = RunProgress()
    first = progress.lines(
        {
            "wait_for_sealed_data": TaskView("running", 1, None),
            "recompute": TaskView(None, 0, None),
        }
    )
    assert first == ["  wait_for_sealed_data     running"]
    assert progress.lines({"wait_for_sealed_data": TaskView("running", 1, None)}) == []
    later = progress.lines(
        {
            "wait_for_sealed_data": TaskView("success", 1, 20.04),
            "recompute": TaskView("up_for_retry", 1, 3.0),
        }
    )
    assert later == [
        "  wait_for_sealed_data     success  20.0 s",
        "  recompute                up_for_retry  3.0 s",
    ]
    retried = progress.lines({"recompute": TaskView("running", 2, None)})
    assert retried == ["  recompute                running (try 2)"]


def test_what_a_task_returned_is_read_from_its_xcom() -> None:
    """Airflow's API gives the stored serialisation of a return value (JSON for plain data);
    a task that returned nothing has no entry (404)."""
    report = {"version": "v1", "increment": {"events": 10}}
    xcom = "/api/v2/dags/d/dagRuns/r/taskInstances/{}/xcomEntries/return_value"

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(200, json={"access_token": "t"})
        if request.url.path == xcom.format("publish"):
            return httpx.Response(200, json={"key": "return_value", "value": json.dumps(report)})
        if request.url.path == xcom.format("native"):
            return httpx.Response(200, json={"key": "return_value", "value": report})
        return httpx.Response(404, json={"detail": "not found"})

    original = httpx.Client
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            trigger_batch.httpx,
            "Client",
            lambda *a, **k: original(*a, transport=httpx.MockTransport(handle), **k),
        )
        client = AirflowClient("http://airflow", "pw")
    assert client.returned("d", "r", "publish") == report
    assert client.returned("d", "r", "native") == report
    assert client.returned("d", "r", "expire_speed_rows") is None
