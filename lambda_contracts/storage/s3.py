"""The storage contract on an S3-compatible bucket (AWS S3, versitygw, any S3 API server).

Each object is written by ONE PutObject, which S3 makes visible whole or not at all, so there is
no temp name and no rename. CAS is a conditional PutObject — ``If-None-Match: *`` to create,
``If-Match: <etag>`` to replace — which the server decides atomically; pyarrow's S3FileSystem
cannot send those headers, so the object operations here use botocore. pyarrow's S3FileSystem
is still what ``filesystem()`` returns, for Parquet readers and writers of large tables.

botocore is used for every object operation, not only CAS, because pyarrow's S3 ``delete_file``
creates a ``dir/`` marker object to keep the parent "directory" alive, and markers would leak
into listings; with one client the object semantics stay exactly S3's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pyarrow.fs as pafs
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from lambda_contracts.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageCheckError,
    StorageError,
    Versioned,
    hidden,
    validate_key,
    validate_prefix,
)
from lambda_contracts.storage_url import S3Location


@dataclass(frozen=True)
class S3Config:
    """Where the bucket is and who we are.

    ``endpoint`` None means AWS itself (virtual-host addressing); a custom endpoint such as
    versitygw's ``http://127.0.0.1:7070`` is addressed path-style, which every S3 server
    supports. Credentials None means the usual AWS chain (AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY, profiles, instance roles); ``open_store`` passes the environment's
    keys explicitly when they are set.
    """

    location: S3Location
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0


# Error codes that mean "these credentials are not accepted" (versitygw answers an unknown
# access key with 404 XAdminUserNotFound where AWS says 403 InvalidAccessKeyId).
_CREDENTIAL_ERRORS = frozenset(
    {
        "AccessDenied",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "XAdminUserNotFound",
    }
)


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


_session_lock = threading.Lock()
_session: botocore.session.Session | None = None


def _create_client(**kwargs: Any) -> Any:
    """A botocore S3 client from one shared session (creating a session loads its service
    data, ~0.4 s; sessions are not thread-safe, the clients they make are)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = botocore.session.get_session()
        return _session.create_client("s3", **kwargs)


class S3Store(ObjectStore):
    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.bucket = config.location.bucket
        self._client = self._make_client(retries=3)
        # A retried conditional PUT whose first attempt succeeded unseen would fail its own
        # precondition and report a lost race; CAS therefore never retries by itself.
        self._cas_client = self._make_client(retries=1)
        self._filesystem: pafs.S3FileSystem | None = None  # made once: it holds a connection pool

    def _make_client(self, retries: int) -> Any:
        cfg = self.config
        return _create_client(
            region_name=cfg.region,
            endpoint_url=cfg.endpoint,
            aws_access_key_id=cfg.access_key,
            aws_secret_access_key=cfg.secret_key,
            aws_session_token=cfg.session_token,
            config=Config(
                s3={"addressing_style": "path" if cfg.endpoint else "auto"},
                retries={"total_max_attempts": retries, "mode": "standard"},
                connect_timeout=cfg.connect_timeout_s,
                read_timeout=cfg.read_timeout_s,
                # Checksums only where S3 requires them: not every S3 server knows the newer
                # flexible-checksum headers.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def describe(self) -> str:
        where = self.config.endpoint or "AWS"
        return f"{self.config.location} at {where}"

    def _object_key(self, key: str) -> str:
        return self.config.location.object_key(validate_key(key))

    def _fail(self, action: str, key: str, exc: Exception) -> StorageError:
        return StorageError(f"{action} {key!r} in {self.describe()} failed: {exc}")

    # --- whole objects ------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> str:
        try:
            response = self._client.put_object(
                Bucket=self.bucket, Key=self._object_key(key), Body=data
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("writing", key, exc) from exc
        return str(response["ETag"])

    def get(self, key: str) -> bytes:
        found = self.get_versioned(key)
        if found is None:
            raise ObjectNotFound(f"no object {key!r} in {self.describe()}")
        return found.data

    def get_versioned(self, key: str) -> Versioned | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._object_key(key))
            data = response["Body"].read()
        except ClientError as exc:
            if _status(exc) == 404 and _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._fail("reading", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("reading", key, exc) from exc
        return Versioned(data, str(response["ETag"]))

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise self._fail("looking up", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("looking up", key, exc) from exc
        return True

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if _status(exc) != 404:
                raise self._fail("deleting", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("deleting", key, exc) from exc

    def _list_pages(self, prefix: str, **extra: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """The LIST pages of ``prefix`` under the store's base, with how many characters of
        each returned key are the base (to strip). Always below "<base>/", so a sibling prefix
        ("data2" next to "data") never leaks."""
        base = self.config.location.prefix
        strip = len(base) + 1 if base else 0
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{base}/{prefix}" if base else prefix, **extra
            )
            for page in pages:
                yield strip, page
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("listing", prefix, exc) from exc

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        validate_prefix(prefix)
        found = [
            ObjectInfo(key, int(item["Size"]), int(item["LastModified"].timestamp() * 1000))
            for strip, page in self._list_pages(prefix)
            for item in page.get("Contents", [])
            if not hidden(key := item["Key"][strip:])
        ]
        return sorted(found, key=lambda info: info.key)

    def list_dirs(self, prefix: str) -> list[str]:
        validate_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"list_dirs needs a directory prefix ending in '/': {prefix!r}")
        found = [
            name
            for strip, page in self._list_pages(prefix, Delimiter="/")
            for common in page.get("CommonPrefixes", [])
            if not hidden((name := common["Prefix"][strip:]).rstrip("/"))
        ]
        return sorted(found)

    def delete_prefix(self, prefix: str) -> None:
        if not prefix.endswith("/"):
            raise ValueError(f"delete_prefix needs a directory prefix ending in '/': {prefix!r}")
        validate_prefix(prefix)
        full_prefix = self.config.location.object_key(prefix.rstrip("/")) + "/"
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full_prefix
            )
            for page in pages:  # every object, directory markers and hidden ones included
                batch = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if batch:
                    self._client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("deleting everything under", prefix, exc) from exc

    # --- compare-and-swap ---------------------------------------------------------------
    def cas(self, key: str, expected_etag: str | None, data: bytes) -> str | None:
        condition = {"IfNoneMatch": "*"} if expected_etag is None else {"IfMatch": expected_etag}
        try:
            response = self._cas_client.put_object(
                Bucket=self.bucket, Key=self._object_key(key), Body=data, **condition
            )
        except ClientError as exc:
            # 412: the etag moved (or the object exists); 409: a concurrent conditional write
            # won on AWS; 404: the object we expected is gone. All mean "someone else won".
            if _status(exc) in (404, 409, 412):
                return None
            raise self._fail("compare-and-swap of", key, exc) from exc
        except BotoCoreError as exc:
            raise StorageError(
                f"compare-and-swap of {key!r} in {self.describe()} has an unknown outcome "
                f"({exc}); re-read the object before trying again"
            ) from exc
        return str(response["ETag"])

    def make_durable(self, keys: list[str]) -> None:
        """Nothing to do: an object whose PUT completed is durable on S3."""

    # --- Arrow and start-up -------------------------------------------------------------
    def filesystem(self) -> pafs.FileSystem:
        if self._filesystem is None:
            self._filesystem = self._make_filesystem()
        return self._filesystem

    def _make_filesystem(self) -> pafs.S3FileSystem:
        cfg = self.config
        options: dict[str, Any] = {
            "region": cfg.region,
            "connect_timeout": cfg.connect_timeout_s,
            "request_timeout": cfg.read_timeout_s,
        }
        if cfg.endpoint:
            parts = urlsplit(cfg.endpoint)
            options["endpoint_override"] = parts.netloc
            options["scheme"] = parts.scheme or "https"
            options["force_virtual_addressing"] = False
        if cfg.access_key and cfg.secret_key:
            options["access_key"] = cfg.access_key
            options["secret_key"] = cfg.secret_key
            if cfg.session_token:
                options["session_token"] = cfg.session_token
        return pafs.S3FileSystem(**options)

    def path(self, key: str) -> str:
        return f"{self.bucket}/{self._object_key(key)}"

    def check(self) -> None:
        where = self.describe()
        base = self.config.location.prefix
        try:
            # A GET, not a HEAD: its error body names the cause (NoSuchBucket,
            # SignatureDoesNotMatch, ...) where a HEAD has a bare status. Listing our prefix
            # also proves the credentials may read our keys, not only see the bucket.
            self._client.list_objects_v2(
                Bucket=self.bucket, Prefix=f"{base}/" if base else "", MaxKeys=1
            )
        except BotoConnectionError as exc:
            raise StorageCheckError(
                f"S3 endpoint {self.config.endpoint or 'of AWS'} is unreachable ({exc}); "
                "is the S3 server running and LAMBDA_S3_ENDPOINT right?"
            ) from exc
        except NoCredentialsError as exc:
            raise StorageCheckError(
                f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from exc
        except ClientError as exc:
            status, code = _status(exc), _code(exc)
            if code == "NoSuchBucket":
                raise StorageCheckError(
                    f"bucket {self.bucket!r} does not exist at {self.config.endpoint or 'AWS'}; "
                    "create it or fix LAMBDA_STORAGE_URL"
                ) from exc
            if status in (401, 403) or code in _CREDENTIAL_ERRORS:
                raise StorageCheckError(
                    f"S3 refused the credentials for {where} (HTTP {status} {code}): wrong "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or no access to the bucket"
                ) from exc
            raise StorageCheckError(f"S3 check of {where} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageCheckError(f"S3 check of {where} failed: {exc}") from exc
