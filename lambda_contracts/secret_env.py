"""Secrets kept out of a child's environment: a child gets only the secrets it needs.

An empty variable reads as unset (``env_ignore_empty``), so a launcher that can only add
variables (Airflow's SparkSubmitOperator) hides inherited secrets with ``blank_secrets()``;
one that builds the environment itself drops them with ``without_secrets``.
"""

from __future__ import annotations

from collections.abc import Mapping

from lambda_contracts.settings import Settings


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """An inherited environment (e.g. ``os.environ``) minus the secret ``LAMBDA_*`` variables."""
    secret = Settings.secret_env_names()
    return {k: v for k, v in env.items() if k not in secret}


def blank_secrets() -> dict[str, str]:
    """Variables that hide inherited secrets from a child (an empty value reads as unset)."""
    return dict.fromkeys(Settings.secret_env_names(), "")
