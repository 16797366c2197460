"""``make batch``: trigger ``lambda_batch`` through the running Airflow's REST API and wait.

Logs in as ``admin`` with the generated password, creates a DAG run and follows it until it
ends: a line each time a task changes state (with its duration once it ended), the increment
once the run published, the run's result, and a non-zero exit unless it succeeded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from infra.airflow_env import AIRFLOW_PORT, API_HOST, admin_password
from lambda_contracts.settings import get_settings

app = typer.Typer(add_completion=False, help=__doc__)
console = Console()


class AirflowClient:
    """The few calls of Airflow's REST API the platform makes, each retried while the answer is
    transient: Airflow's API on SQLite answers 500 while the scheduler or the DAG processor
    holds the database (often right after ``make up``), and restarts drop connections."""

    def __init__(self, base_url: str, password: str, retry_s: float = 120) -> None:
        self.retry_s = retry_s
        self.http = httpx.Client(base_url=base_url, timeout=30)
        token = self._request(
            "POST", "/auth/token", json={"username": "admin", "password": password}
        )
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def _request(
        self, method: str, path: str, unknown_for_s: float = 0, **kwargs: Any
    ) -> httpx.Response:
        """The call's answer, raised for status unless it succeeded. A 5xx or a lost
        connection is retried with backoff for ``retry_s``; a 404 for ``unknown_for_s`` (a DAG
        the processor has not parsed yet). A retried POST may have taken effect once already."""
        started = time.monotonic()
        delay = 0.5
        while True:
            elapsed = time.monotonic() - started
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if elapsed > self.retry_s:
                    raise
            else:
                transient = response.status_code >= 500 and elapsed <= self.retry_s
                unknown = response.status_code == 404 and elapsed <= unknown_for_s
                if not (transient or unknown):
                    response.raise_for_status()
                    return response
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def wait_for_dag(self, dag_id: str, timeout: float = 300) -> None:
        """Until the DAG processor has parsed the DAG: right after ``make up`` it is unknown
        (404) for up to a parsing interval, which is no reason to fail a trigger."""
        self._request("GET", f"/api/v2/dags/{dag_id}", unknown_for_s=timeout)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.wait_for_dag(dag_id)
        self._request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        run = {"logical_date": None, "conf": conf or {}}
        response = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=run)
        return response.json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        response = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return response.json()["state"]

    def tasks(self, dag_id: str, run_id: str) -> dict[str, TaskView]:
        """Each task instance of the run: its state, try and duration (once ended)."""
        response = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {
            t["task_id"]: TaskView(t["state"], t.get("try_number") or 0, t.get("duration"))
            for t in response.json()["task_instances"]
        }

    def returned(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """What a task of the run returned (its ``return_value`` XCom), or None."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        try:
            response = self._request("GET", f"{path}/xcomEntries/return_value")
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None
            raise
        value = response.json().get("value")
        if isinstance(value, str):  # the stored serialisation, JSON for plain values
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value


@dataclass(frozen=True)
class TaskView:
    state: str | None
    try_number: int
    duration_s: float | None


class RunProgress:
    """What changed in a run since the last look, as lines for the terminal."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str | None, int]] = {}

    def lines(self, tasks: dict[str, TaskView]) -> list[str]:
        out = []
        for task, view in tasks.items():
            if self._seen.get(task) == (view.state, view.try_number):
                continue
            self._seen[task] = (view.state, view.try_number)
            if view.state is None:
                continue  # not scheduled yet: nothing to say
            line = f"  {task:24s} {view.state}"
            if view.try_number > 1:
                line += f" (try {view.try_number})"
            if view.duration_s is not None and view.state in ENDED:
                line += f"  {view.duration_s:.1f} s"
            out.append(line)
        return out


ENDED = {"success", "failed", "skipped", "upstream_failed", "up_for_retry"}


@app.command()
def trigger(
    dag_id: Annotated[str, typer.Option(help="DAG to run")] = "lambda_batch",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the run")] = 1800,
) -> None:
    """Trigger a DAG run and wait for its end."""
    settings = get_settings()
    client = AirflowClient(f"http://{API_HOST}:{AIRFLOW_PORT}", admin_password(settings))
    run_id = client.trigger(dag_id)
    console.print(f"triggered {dag_id} run {run_id}; waiting (the sensor waits for sealed data)")
    deadline = time.monotonic() + timeout
    state = "queued"
    progress = RunProgress()
    published = False
    while time.monotonic() < deadline:
        state = client.run_state(dag_id, run_id)
        tasks = client.tasks(dag_id, run_id)
        for line in progress.lines(tasks):
            console.print(line, highlight=False)
        publish = tasks.get("publish")
        if not published and publish is not None and publish.state == "success":
            published = True
            report = client.returned(dag_id, run_id, "publish") or {}
            console.print(f"  increment: {report.get('increment')}", highlight=False)
        if state in ("success", "failed"):
            break
        time.sleep(2)
    result = client.returned(dag_id, run_id, "report") if state == "success" else None
    if result:
        console.print(f"  result: {_result_line(result)}", highlight=False)
    if state != "success":
        console.print(f"[red]{dag_id} run {run_id} ended as {state}[/red]")
        raise typer.Exit(1)
    console.print(f"[green]{dag_id} run {run_id} succeeded[/green]")


def _result_line(report: dict[str, Any]) -> str:
    """The run's report in a line: version, horizon, drift, expiry, pruned versions."""
    keys = ("version", "horizon_ms", "drift_events", "expired_speed_rows", "pruned")
    return ", ".join(f"{key} {report[key]}" for key in keys if key in report)


if __name__ == "__main__":
    app()
