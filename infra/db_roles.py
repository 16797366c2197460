"""The platform's PostgreSQL roles: each service logs in as its own, with only what it uses.

- ``speed`` (the speed layer) owns the speed store's tables: it creates them, and a declared
  view's table when the view is deployed, and writes them;
- ``batch`` (Airflow's batch tasks) reads and writes their rows (absorbed rows expire, the
  runs' drift is recorded) but changes no table;
- ``serving`` only reads;
- ``airflow`` owns Airflow's metadata database and nothing of the speed store.

``provision`` makes it so, as the server's administrator: the two databases, the roles with
their passwords, the schema's and the tables' privileges (also for tables the speed role
creates later: default privileges), then the speed store's tables, created by the speed role.
It is idempotent: a role that exists gets its password set again, a grant given twice is one.
``lambda-platform db-init`` runs it (compose's ``db-init``, the cluster's PostgreSQL host).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg import sql
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from lambda_contracts.db import create_tables, make_engine

STORE_ROLES = ("speed", "batch", "serving")
# What each role may do with the speed store's tables (the speed role owns them: all).
TABLE_PRIVILEGES = {"batch": "SELECT, INSERT, UPDATE, DELETE", "serving": "SELECT"}


@dataclass(frozen=True)
class DbLogins:
    """The administrator's URL and each role's URL (its name, password and database)."""

    admin: URL
    store: Mapping[str, URL]  # "speed", "batch", "serving" -> a URL of the speed store
    airflow: URL  # Airflow's metadata database, as its owner

    @classmethod
    def of(cls, admin: str, store: Mapping[str, str], airflow: str) -> DbLogins:
        return cls(make_url(admin), {k: make_url(v) for k, v in store.items()}, make_url(airflow))

    def __post_init__(self) -> None:
        missing = set(STORE_ROLES) - set(self.store)
        if missing:
            raise ValueError(f"no URL for the store role(s) {sorted(missing)}")
        databases = {str(url.database) for url in self.store.values()}
        if len(databases) != 1:
            raise ValueError(f"the store roles name different databases: {sorted(databases)}")

    @property
    def store_database(self) -> str:
        return str(self.store["speed"].database)


class DbInitSettings(BaseSettings):
    """What ``db-init`` reads (``LAMBDA_DB_*``): the administrator's URL and every role's. Only
    the one-off ``db-init`` gets these; each service gets its own role's URL, in
    ``LAMBDA_SPEED_STORE_URL`` (Airflow: ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``)."""

    model_config = SettingsConfigDict(env_prefix="LAMBDA_DB_", env_ignore_empty=True)

    admin_url: SecretStr = Field(description="a superuser's (or CREATEROLE, CREATEDB) URL")
    speed_url: SecretStr = Field(description="the speed layer's role, on the speed store")
    batch_url: SecretStr = Field(description="the batch tasks' role, on the speed store")
    serving_url: SecretStr = Field(description="serving's role, on the speed store")
    airflow_url: SecretStr = Field(description="Airflow's role, on its metadata database")

    def logins(self) -> DbLogins:
        store = {
            "speed": self.speed_url.get_secret_value(),
            "batch": self.batch_url.get_secret_value(),
            "serving": self.serving_url.get_secret_value(),
        }
        return DbLogins.of(
            self.admin_url.get_secret_value(), store, self.airflow_url.get_secret_value()
        )


def conninfo(url: URL, database: str | None = None) -> str:
    return psycopg.conninfo.make_conninfo(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=database or url.database,
    )


def _ensure_role(conn: psycopg.Connection, url: URL) -> None:
    name, password = sql.Identifier(str(url.username)), sql.Literal(url.password or "")
    found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [url.username]).fetchone()
    verb = "ALTER" if found else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(name, password))


def _ensure_database(conn: psycopg.Connection, name: str, owner: str) -> None:
    found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    database, role = sql.Identifier(name), sql.Identifier(owner)
    if found is None:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))
    else:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, role))


def provision(logins: DbLogins) -> None:
    """Databases, roles and privileges as the module says; then the speed store's tables."""
    store = logins.store
    roles = {role: sql.Identifier(str(url.username)) for role, url in store.items()}
    admin_db = str(logins.admin.database or "postgres")
    with psycopg.connect(conninfo(logins.admin, admin_db), autocommit=True) as conn:
        for url in (*store.values(), logins.airflow):
            _ensure_role(conn, url)
        # The store's database belongs to the administrator: the roles get what they use.
        _ensure_database(conn, logins.store_database, str(logins.admin.username))
        _ensure_database(conn, str(logins.airflow.database), str(logins.airflow.username))
        airflow_db = sql.Identifier(str(logins.airflow.database))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(airflow_db))
    with psycopg.connect(conninfo(logins.admin, logins.store_database), autocommit=True) as conn:
        database = sql.Identifier(logins.store_database)
        everyone = sql.SQL(", ").join(roles.values())
        for statement in (
            "REVOKE ALL ON DATABASE {db} FROM PUBLIC",
            "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {everyone}",
            "REVOKE ALL ON SCHEMA public FROM PUBLIC",
            "GRANT USAGE ON SCHEMA public TO {everyone}",
            "GRANT CREATE ON SCHEMA public TO {speed}",
        ):
            conn.execute(sql.SQL(statement).format(db=database, everyone=everyone,
                                                   speed=roles["speed"]))  # fmt: skip
        for role, privileges in TABLE_PRIVILEGES.items():
            grants = (
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {{owner}} IN SCHEMA public "
                f"GRANT {privileges} ON TABLES TO {{role}}",
                f"GRANT {privileges} ON ALL TABLES IN SCHEMA public TO {{role}}",
            )
            for grant in grants:
                conn.execute(sql.SQL(grant).format(owner=roles["speed"], role=roles[role]))
        sequences = "USAGE, SELECT"
        conn.execute(
            sql.SQL(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {{owner}} IN SCHEMA public "
                f"GRANT {sequences} ON SEQUENCES TO {{role}}"
            ).format(owner=roles["speed"], role=roles["batch"])
        )
    engine = make_engine(store["speed"].render_as_string(hide_password=False), create=False)
    try:
        create_tables(engine)  # owned by the speed role, so the default privileges apply
    finally:
        engine.dispose()
