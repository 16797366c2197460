"""Airflow reads its configuration at import: point it at a throw-away home first."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from infra.airflow_env import airflow_env
from lambda_contracts.settings import Settings

_home = tempfile.mkdtemp(prefix="lambda-airflow-test-")
# Removed at exit: otherwise every test session leaves one behind in /tmp.
atexit.register(shutil.rmtree, _home, ignore_errors=True)
for _key, _value in airflow_env(Settings(data_dir=_home)).items():
    os.environ.setdefault(_key, _value)
