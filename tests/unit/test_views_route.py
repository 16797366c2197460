"""The generic views route is built from a view's declaration: its parameters, its checks."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from lambda_contracts.views import AMOUNT_MEASURES, View
from serving.routes.views import views_router
from serving.served_views import ServedView

TARGET_HOUR = View(
    name="target_hour",
    dimensions=("target_account_id",),
    window_ms=3_600_000,
    measures=AMOUNT_MEASURES,
    description="Per target account per hour.",
)


class NoQueries:
    """Any query reaching the stores fails the test: these requests must be refused first."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the query service was used ({name}) for a refused request")


def client() -> TestClient:
    app = FastAPI()
    app.include_router(views_router((ServedView.of_view(TARGET_HOUR),)))
    app.state.queries = NoQueries()
    return TestClient(app)


def test_a_granularity_finer_than_the_views_window_is_refused() -> None:
    answer = client().get(
        "/v1/views/target_hour", params={"start": 0, "end": 3_600_000, "granularity": "minute"}
    )
    assert answer.status_code == 422
    assert "granularity minute is finer than the window of view target_hour (hour)" in answer.text


def test_openapi_documents_the_views_dimensions_and_measures() -> None:
    spec = client().get("/openapi.json").json()
    operation = spec["paths"]["/v1/views/target_hour"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert {
        "start",
        "end",
        "granularity",
        "group_by",
        "order_by",
        "limit",
        "TargetAccountID",
    } == set(params)
    assert params["TargetAccountID"]["schema"]["anyOf"][0]["maxLength"] == 128
    schemas = spec["components"]["schemas"]
    assert schemas["TargetHourDimension"]["enum"] == ["TargetAccountID"]
    assert schemas["TargetHourMeasure"]["enum"] == ["count", "sum", "min", "max"]
    row = schemas["TargetHourRow"]["properties"]
    assert {"TargetAccountID", "window_start", "count", "sum", "min", "max"} == set(row)
    assert "SourceAccountID" not in row


def test_an_unknown_view_is_404_naming_the_views() -> None:
    answer = client().get("/v1/views/source_hour", params={"start": 0, "end": 1})
    assert answer.status_code == 404
    assert answer.json() == {"detail": "no view named 'source_hour'; the views are: target_hour"}
