"""Object stores for tests: a local directory, or a fresh prefix on the session's S3 server."""

from __future__ import annotations

import uuid

from infra.s3_server import S3Server
from lambda_contracts.storage import S3Location
from lambda_contracts.storage.s3 import S3Config, S3Store


def s3_store(server: S3Server, bucket: str | None = None, **overrides: object) -> S3Store:
    """A store on the test server under a fresh prefix, so tests never see each other."""
    values: dict[str, object] = {
        "location": S3Location(bucket or server.buckets[0], f"t-{uuid.uuid4().hex[:12]}"),
        "endpoint": server.endpoint,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "connect_timeout_s": 2.0,
    }
    values.update(overrides)
    return S3Store(S3Config(**values))  # type: ignore[arg-type]
