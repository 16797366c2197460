"""The storage contract every layer writes and reads the master dataset through.

Two backends implement it — a local directory and an S3-compatible bucket — with the same
guarantees, so the speed layer, the batch layer and serving never know which one they run on:

- ``put`` makes a whole object appear under its final key: a reader sees the old object or the
  complete new one, never a prefix, and a successful put survives a crash. There is no rename
  (S3 has none); a multi-object result is published by writing its manifest or pointer last.
- ``cas`` replaces a small pointer object (``CURRENT``, progress records) only if it still has
  the etag the writer read, so of two racing writers exactly one wins.
- ``list`` returns every object whose key starts with a prefix — no directories, no matches is
  an empty list — in key order.

Keys are ``/``-separated relative paths. Segments starting with ``.`` are reserved for each
backend's own bookkeeping (temporary files, lock files) and are neither accepted nor listed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import pyarrow.fs as pafs


class StorageError(RuntimeError):
    """A storage operation failed for a reason other than a missing object."""


class ObjectNotFound(StorageError, KeyError):
    """The key names no object."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "object not found"


class StorageCheckError(StorageError):
    """The configured storage cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class ObjectInfo:
    """A listed object; ``modified_ms``: when it was last written (epoch ms), so a reader
    can tell a live job's objects from a killed one's without trusting names."""

    key: str
    size: int
    modified_ms: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Versioned:
    """An object's bytes with the etag they were read at — what ``cas`` expects back."""

    data: bytes
    etag: str


def validate_key(key: str) -> str:
    """The key itself if it names an object, else ValueError.

    The same keys are valid on every backend, so code that runs locally runs on S3 too.
    """
    if not key or key.startswith("/") or key.endswith("/") or "\0" in key:
        raise ValueError(f"invalid storage key {key!r}")
    for segment in key.split("/"):
        if not segment or segment.startswith("."):
            raise ValueError(f"invalid storage key {key!r}: empty or dot-prefixed segment")
    return key


def validate_prefix(prefix: str) -> str:
    """The prefix itself if listing by it is well defined ("" lists everything)."""
    if prefix.startswith("/") or "\0" in prefix or "//" in prefix:
        raise ValueError(f"invalid storage prefix {prefix!r}")
    # Only complete segments can be checked: "landing/bucket=1" may be a partial name.
    if any(segment.startswith(".") for segment in prefix.split("/")[:-1]):
        raise ValueError(f"invalid storage prefix {prefix!r}: dot-prefixed segment")
    return prefix


def hidden(key: str) -> bool:
    """Whether a key found in the backend is bookkeeping (or foreign) and must not be listed."""
    return key.endswith("/") or any(s.startswith(".") or not s for s in key.split("/"))


class ObjectStore(ABC):
    """One place objects live: a local directory or an S3 bucket and prefix."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> str:
        """Write the whole object durably, replacing any previous one; returns its etag."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound if there is none."""

    @abstractmethod
    def get_versioned(self, key: str) -> Versioned | None:
        """The object's bytes and etag read together, or None if there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""

    @abstractmethod
    def list_dirs(self, prefix: str) -> list[str]:
        """The "directories" directly below ``prefix`` (which ends with "/"), as prefixes
        ending with "/", sorted: on S3 the common prefixes of a delimited LIST. Lets a reader
        list only the parts of a large tree it needs (the landing buckets of one increment)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error (retries are safe)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Remove everything under ``prefix`` (a "directory": it ends with "/"), including
        what other writers left there that ``list`` does not show (Hadoop's checksum files,
        directory markers). For removing a whole batch version or a job's scratch output."""

    @abstractmethod
    def make_durable(self, keys: list[str]) -> None:
        """Make objects that another writer put through ``filesystem()`` (Spark, via its own
        file system client) as durable as ``put`` would have: call before publishing a
        manifest that names them."""

    @abstractmethod
    def cas(self, key: str, expected_etag: str | None, data: bytes) -> str | None:
        """Write ``data`` only if the object's etag is still ``expected_etag`` (None: only if
        there is no object). Returns the new etag, or None when another writer got there first.

        Meant for small pointer objects that are written by ``cas`` only; a plain ``put`` to
        the same key does not take part in the protocol.
        """

    @abstractmethod
    def filesystem(self) -> pafs.FileSystem:
        """A pyarrow filesystem over the same objects, for Parquet readers and writers
        (pyarrow.parquet, pyarrow.dataset, DuckDB through Arrow); use with ``path``."""

    @abstractmethod
    def path(self, key: str) -> str:
        """Where ``key`` lives inside ``filesystem()``."""

    @abstractmethod
    def check(self) -> None:
        """Raise StorageCheckError with a clear reason unless the store is usable.

        Called at start-up, so a misconfiguration stops a process at once instead of failing
        later — and never falls back to another place.
        """

    @abstractmethod
    def describe(self) -> str:
        """Where the objects live, for logs and error messages."""
