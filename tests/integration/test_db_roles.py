"""Each service's PostgreSQL role may do what the service does, and nothing more, on a real
server: the speed role owns the store's tables (and creates a deployed view's), the batch role
writes rows but no table, serving only reads, Airflow's role stays in its own database."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url

from infra.db_roles import DbLogins, conninfo, provision
from lambda_contracts.db import make_engine
from lambda_contracts.store_schema import ViewTables, metadata
from lambda_contracts.views import VIEWS
from tests.support.pipeline import BIN
from tests.support.services import Postgres

pytestmark = [pytest.mark.integration]


@pytest.fixture
def logins(postgres: Postgres) -> Iterator[DbLogins]:
    tag = uuid.uuid4().hex[:8]  # roles are the server's, not a database's: one set per test
    base = make_url(postgres.url)

    def login(role: str, database: str) -> str:
        url = base.set(username=f"{role}_{tag}", password=f"{role}-pw", database=database)
        return url.render_as_string(hide_password=False)

    store_db, airflow_db = f"store_{tag}", f"airflow_{tag}"
    yield DbLogins.of(
        postgres.url,
        {role: login(role, store_db) for role in ("speed", "batch", "serving")},
        login("airflow", airflow_db),
    )


def run(url: URL, statement: str) -> None:
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def refused(url: URL, statement: str) -> bool:
    try:
        run(url, statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def test_each_role_may_do_what_its_service_does_and_no_more(logins: DbLogins) -> None:
    provision(logins)
    provision(logins)  # idempotent: db-init runs at every `docker compose up`
    speed, batch, serving = (logins.store[r] for r in ("speed", "batch", "serving"))

    # The store's tables exist, owned by the speed role.
    with psycopg.connect(conninfo(speed)) as conn:
        owners = dict(conn.execute("SELECT tablename, tableowner FROM pg_tables "
                                   "WHERE schemaname = 'public'").fetchall())  # fmt: skip
    assert set(owners) == {t.name for t in metadata.sorted_tables}
    assert set(owners.values()) == {speed.username}

    # Each service's own start (make_engine creates what is missing) works under its role.
    for url in (speed, batch, serving):
        make_engine(url.render_as_string(hide_password=False)).dispose()

    # A view deployed later: the speed role creates its table; the others get their share.
    view = replace(VIEWS[0], name="received_probe")  # not built in: a declared view's table
    engine = create_engine(speed)
    with engine.begin() as conn:
        ViewTables([view]).create_declared(conn)
    engine.dispose()
    table = f"speed_{view.name}"

    for tbl in (table, "batch_runs"):
        run(batch, f"DELETE FROM {tbl}")  # absorbed rows expire; a run's drift is replaced
        run(serving, f"SELECT count(*) FROM {tbl}")
        assert refused(serving, f"DELETE FROM {tbl}"), f"serving may delete from {tbl}"
    run(
        batch,
        "INSERT INTO batch_runs (version, horizon_ms, previous_horizon_ms, "
        "published_at_ms, batch_events) VALUES ('v', 0, 0, 0, 0)",
    )
    run(batch, "UPDATE batch_runs SET published_at_ms = 1 WHERE version = 'v'")
    assert refused(serving, "UPDATE batch_runs SET published_at_ms = 2")

    for url in (batch, serving):  # no table of their own, none dropped or altered
        assert refused(url, "CREATE TABLE intruder (x int)"), url.username
        assert refused(url, f"DROP TABLE {table}"), url.username
        assert refused(url, "ALTER TABLE batch_runs ADD COLUMN x int"), url.username
    run(speed, "CREATE TABLE speed_scratch (x int)")  # the owner may

    # Airflow's role owns its database, and cannot even connect to the store's; nor can the
    # store's roles reach Airflow's.
    run(logins.airflow, "CREATE TABLE dag_run_probe (x int)")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        run(logins.airflow.set(database=logins.store_database), "SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        run(serving.set(database=logins.airflow.database), "SELECT 1")


def test_a_role_without_its_url_is_refused(postgres: Postgres) -> None:
    with pytest.raises(ValueError, match="serving"):
        DbLogins.of(postgres.url, {"speed": postgres.url, "batch": postgres.url}, postgres.url)


def test_db_init_provisions_from_its_environment(logins: DbLogins) -> None:
    """``lambda-platform db-init`` as compose's db-init runs it: URLs from LAMBDA_DB_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_DB_")}
    urls = {"ADMIN": logins.admin, "AIRFLOW": logins.airflow}
    urls |= {role.upper(): url for role, url in logins.store.items()}
    env |= {f"LAMBDA_DB_{k}_URL": u.render_as_string(hide_password=False) for k, u in urls.items()}
    done = subprocess.run([str(BIN / "lambda-platform"), "db-init"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(logins.store["serving"].username) in done.stdout
    assert refused(logins.store["serving"], "DELETE FROM batch_runs")

    nowhere = logins.admin.set(port=9)  # the discard port: nothing listens
    env["LAMBDA_DB_ADMIN_URL"] = nowhere.render_as_string(hide_password=False)
    down = subprocess.run([str(BIN / "lambda-platform"), "db-init"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert down.returncode == 1, down.stdout + down.stderr
    assert down.stdout.count("\n") == 1 and down.stdout.startswith("error: db-init at ")
    del env["LAMBDA_DB_SERVING_URL"]
    unset = subprocess.run([str(BIN / "lambda-platform"), "db-init"], env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert unset.returncode == 78 and "LAMBDA_DB_SERVING_URL" in unset.stdout
