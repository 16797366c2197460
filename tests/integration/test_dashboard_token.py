"""The dashboard works when the API needs a bearer token (headless Chromium, no broker).

The page first shows that a token is needed; once one is entered it sends it as
``Authorization: Bearer`` on every /v1 request and renders the data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page
from pydantic import SecretStr

from lambda_contracts.db import make_engine
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import view_tables
from serving.main import create_app
from serving.snapshot_cache import Refreshed
from tests.support.app_server import served
from tests.support.browser import CHROMIUM

pytestmark = pytest.mark.integration

TOKEN = "dashboard-s3cret"


@pytest.fixture
def secured_server(tmp_path: Path) -> Iterator[str]:
    """The API with a token, a few speed rows in the last hour, and no Kafka to ask."""
    settings = Settings(
        data_dir=tmp_path, partitions=1, topic="tx", api_token=SecretStr(TOKEN), api_port=0
    )
    engine = make_engine(settings.speed_store_url)
    minute = int(time.time() * 1000) // 60_000 * 60_000
    with engine.begin() as conn:
        conn.execute(
            view_tables["global_minute"].insert(),
            [
                {"window_start": minute - i * 60_000, "ingest_bucket": 0, "txn_count": i + 1,
                 "amount_sum": 100, "amount_min": 100, "amount_max": 100}
                for i in range(5)
            ],
        )  # fmt: skip
    engine.dispose()
    app = create_app(settings)
    with served(app) as base:
        app.state.end_offsets.get = lambda: None  # no broker: lag and caught-up are unknown
        app.state.group_reading = Refreshed(lambda: None)  # and so are the group and the DLQ
        app.state.rejects_reading = Refreshed(lambda: None)
        yield base


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_dashboard_sends_the_token_it_was_given(tab: Page, secured_server: str) -> None:
    auth_by_url: list[tuple[str, str | None]] = []
    tab.on(
        "request",
        lambda r: (
            auth_by_url.append((r.url, r.headers.get("authorization"))) if "/v1/" in r.url else None
        ),
    )
    tab.goto(secured_server + "/")
    tab.wait_for_selector("body[data-auth=needed]", timeout=20_000)
    assert "token" in tab.inner_text("#freshness")

    tab.fill("#token", TOKEN)
    tab.click("#token-form button")
    tab.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert tab.locator("#merge-rows tbody tr").count() == 5
    assert tab.evaluate("sessionStorage.getItem('lambda.apiToken')") == TOKEN
    sent = [auth for _, auth in auth_by_url if auth is not None]
    assert sent and all(auth == f"Bearer {TOKEN}" for auth in sent)
    # A reload keeps the token for this tab.
    auth_by_url.clear()
    tab.reload()
    tab.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert auth_by_url and all(auth == f"Bearer {TOKEN}" for _, auth in auth_by_url)
