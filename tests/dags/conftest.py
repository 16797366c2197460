"""Airflow reads its configuration at import: point it at a throw-away home first."""

from __future__ import annotations

import os
import tempfile

from infra.airflow_env import airflow_env
from lambda_contracts.settings import Settings

_home = tempfile.mkdtemp(prefix="lambda-airflow-test-")
for _key, _value in airflow_env(Settings(data_dir=_home)).items():
    os.environ.setdefault(_key, _value)
