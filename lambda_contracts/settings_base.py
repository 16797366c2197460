"""What every group of settings shares: the ``LAMBDA_`` prefix, empty meaning unset."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG = SettingsConfigDict(env_prefix="LAMBDA_", extra="ignore", env_ignore_empty=True)


class SettingsGroup(BaseSettings):
    """A concern's part of :class:`Settings`: read like it, should one be made on its own."""

    model_config = CONFIG
