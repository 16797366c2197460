"""Parsing ``s3://bucket/prefix`` storage URLs.

Outside the ``storage`` package on purpose: settings validate the URL with it, and importing
settings (every DAG file does, at parse time) must not pull in pyarrow or botocore.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# S3's rules for bucket names (lower case, digits, dots, hyphens; 3-63 characters).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix inside it ("" for the bucket's root, else without slashes at
    either end); every key of a store lives at ``<prefix>/<key>``."""

    bucket: str
    prefix: str

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_url(url: str) -> S3Location:
    """``s3://bucket[/prefix]`` as a location; a ValueError says what is wrong with it."""
    if not url.startswith("s3://"):
        raise ValueError(f"storage URL must look like s3://bucket/prefix, got {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(f"invalid S3 bucket name {bucket!r} in storage URL {url!r}")
    prefix = prefix.strip("/")
    if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError(f"invalid key prefix {prefix!r} in storage URL {url!r}")
    return S3Location(bucket, prefix)
