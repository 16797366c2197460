"""Airflow's configuration for local mode, as environment variables, from the platform settings.

Small on purpose: LocalExecutor with parallelism 2, one DAG-parsing process, one API worker
(Airflow's defaults start ~40 processes). Login is Airflow's simple auth manager with user
``admin`` and a password generated at first start, kept in a file readable only by its owner.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from pathlib import Path

from lambda_contracts.layout import Layout
from lambda_contracts.settings import PROJECT_ROOT, Settings

API_HOST = "127.0.0.1"
AIRFLOW_PORT = 8080


# HS512 signs Airflow's tokens: PyJWT warns (in the API server's log) about a key shorter than
# the hash's 64 bytes. 64 random bytes, URL-safe: 86 characters.
JWT_SECRET_BYTES = 64


def _secret_file(path: Path, make: str, min_length: int = 0) -> str:
    """Read a secret, creating it (mode 0600) on first use, or anew if it is shorter than
    ``min_length`` (one made by an older version)."""
    if path.exists() and len(path.read_text()) < min_length:
        path.unlink()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make)
    return path.read_text()


def password_file(settings: Settings) -> Path:
    return Layout(settings.data_dir).airflow_dir / "admin-password.json"


def admin_password(settings: Settings) -> str:
    raw = _secret_file(password_file(settings), json.dumps({"admin": secrets.token_urlsafe(18)}))
    return json.loads(raw)["admin"]


def spark_connection(settings: Settings) -> str:
    """The ``spark_default`` connection: its host is the whole master URL."""
    return json.dumps({"conn_type": "spark", "host": settings.spark_master})


# The components that sign or check Airflow's tokens (its config.yml says so): the API
# server and the scheduler (its executor signs each task's token). The DAG processor and the
# triggerer reach the Execution API in process; tasks, spark-submit and serving need none.
JWT_COMPONENTS = ("api-server", "scheduler")


def jwt_secret_file(settings: Settings) -> Path:
    """The JWT secret, made (mode 0600, 64 random bytes) on first use."""
    path = Layout(settings.data_dir).airflow_dir / "jwt-secret"
    _secret_file(path, secrets.token_urlsafe(JWT_SECRET_BYTES), min_length=JWT_SECRET_BYTES)
    return path


def jwt_env(settings: Settings, component: str) -> dict[str, str]:
    """How ``component`` gets the JWT secret: for those of JWT_COMPONENTS, a command that
    reads it from its file (Airflow's ``_CMD`` form), so the secret itself is in no process's
    environment, and the tasks the scheduler forks inherit only the command; none for others."""
    if component not in JWT_COMPONENTS:
        return {}
    read = shlex.join(["cat", str(jwt_secret_file(settings))])
    return {"AIRFLOW__API_AUTH__JWT_SECRET_CMD": read}


def airflow_env(settings: Settings, api_port: int = AIRFLOW_PORT) -> dict[str, str]:
    """What every Airflow process shares (the JWT secret is not in it: :func:`jwt_env`)."""
    home = Layout(settings.data_dir).airflow_dir
    home.mkdir(parents=True, exist_ok=True)
    admin_password(settings)
    # Made here, by whichever Airflow command runs first (compose's airflow-init), not by the
    # API server and the scheduler racing to create it when they start side by side.
    jwt_secret_file(settings)
    api_url = f"http://{API_HOST}:{api_port}"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file(settings)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        # A task whose process died with its scheduler is failed (and retried) after 1 min of
        # silence, not the default 5: the batch layer's runs last about that long.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        "AIRFLOW__API__HOST": API_HOST,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_SPARK_DEFAULT": spark_connection(settings),
    }
