"""The one storage contract of the platform: whole objects, listing, and CAS for pointers.

``open_store(settings)`` gives the configured backend — the local data directory by default,
an S3 bucket when ``LAMBDA_STORAGE_URL=s3://bucket/prefix`` — and a process calls ``check()``
on it at start-up. See ``base`` for the guarantees every backend keeps.
"""

from __future__ import annotations

import os

from lambda_contracts.settings import Settings
from lambda_contracts.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageCheckError,
    StorageError,
    Versioned,
)
from lambda_contracts.storage.local import LocalStore
from lambda_contracts.storage_url import S3Location, parse_s3_url

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3Location",
    "StorageCheckError",
    "StorageError",
    "Versioned",
    "open_store",
    "parse_s3_url",
]


def open_store(settings: Settings) -> ObjectStore:
    """The store the settings name. Nothing is contacted yet: call ``check()`` for that."""
    if settings.storage_url is None:
        return LocalStore(settings.data_dir)
    # Imported here so local mode never loads botocore.
    from lambda_contracts.storage.s3 import S3Config, S3Store

    # Keys in the environment are taken as they are now (a shared botocore session would
    # otherwise keep the first ones it resolved); without them, the rest of the AWS chain.
    return S3Store(
        S3Config(
            location=parse_s3_url(settings.storage_url),
            endpoint=settings.s3_endpoint,
            region=settings.s3_region,
            access_key=os.environ.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
        )
    )
