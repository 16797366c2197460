"""Fixtures: a real Kafka broker and PostgreSQL server for the session, isolated settings."""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright

from infra.local_broker import Broker, start_broker
from infra.s3_server import S3Server, start_s3_server
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from tests.support import ports
from tests.support.browser import LAUNCH, VIEWPORT
from tests.support.pipeline import SpeedProcess
from tests.support.services import Postgres
from tests.support.stores import s3_store
from tests.support.topic_settings import fresh_settings

TEST_KAFKA_PORT = ports.KAFKA_PORT
TEST_CONTROLLER_PORT = ports.CONTROLLER_PORT
TEST_PG_PORT = ports.PG_PORT
TEST_S3_PORT = ports.S3_PORT
TEST_S3_BUCKET = "lambda-test"


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, driven by pytest-playwright's Playwright (its own browsers are not
    downloaded). Not its ``page`` fixture: that one parametrizes every test using it by
    browser at session scope, which reorders them across modules. Once started, Playwright's
    sync API holds the main thread's event loop until the session ends: a test that runs
    asyncio itself does so on a thread of its own."""
    browser = playwright.chromium.launch(**LAUNCH)
    yield browser
    browser.close()


@pytest.fixture
def tab(chromium: Browser) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies or storage from another test)."""
    context = chromium.new_context(viewport=VIEWPORT)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = start_broker(tmp_path_factory.mktemp("kafka"), TEST_KAFKA_PORT, TEST_CONTROLLER_PORT)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    # Not under pytest's private temp dir: the postgres user must be able to reach it.
    pg = Postgres(Path(tempfile.mkdtemp(prefix="lambda-pg-")), TEST_PG_PORT)
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(pg.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """versitygw on a temp directory with bucket ``TEST_S3_BUCKET`` (built on first use)."""
    server = start_s3_server(
        tmp_path_factory.mktemp("s3"),
        TEST_S3_PORT,
        access_key="lambda-test",
        secret_key="lambda-test-secret",
        buckets=(TEST_S3_BUCKET,),
    )
    yield server
    server.stop()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> Layout:
    """A layout whose master dataset is a local directory, then a prefix on the S3 server."""
    if request.param == "local":
        return Layout(tmp_path)
    return Layout(tmp_path, s3_store(request.getfixturevalue("s3_server")))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Each speed-store backend in turn: SQLite (the default) and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None  # the default: SQLite under the data directory
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def make_settings(broker: Broker, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on the test broker with a fresh topic, group and data directory."""

    def make(create_topics: bool = True, **overrides: Any) -> Settings:
        return fresh_settings(broker, tmp_path / "data", create_topics, **overrides)

    return make


@pytest.fixture(autouse=True)
def _no_leftover_speed_processes() -> Iterator[None]:
    """A failed test must not leave its speed-layer processes running into the next one."""
    already = SpeedProcess.started_count()
    yield
    SpeedProcess.kill_started_after(already)


@pytest.fixture(autouse=True)
def _no_leftover_store_processes() -> Iterator[None]:
    """The store processes of a test's in-process speed layers (``speed_layer.store_process``)
    end with the test: each holds an interpreter and a store connection until its layer's
    process exits, and a layer driven by its step is never shut down."""
    already = {child.pid for child in multiprocessing.active_children()}
    yield
    for child in multiprocessing.active_children():
        if child.name == "speed-store" and child.pid not in already:
            child.kill()
            child.join()


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_module_speed_processes() -> Iterator[None]:
    """The same for processes a module-scoped fixture started (also when its set-up failed)."""
    already = SpeedProcess.started_count()
    yield
    SpeedProcess.kill_started_after(already)
