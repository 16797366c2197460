"""The storage contract on a local directory (the default, and every test's first backend).

Whole-object writes are temp file + fsync + rename + directory fsync: POSIX rename is atomic, so
readers see the old or the new file, and after a crash a renamed file is complete. CAS takes an
exclusive ``flock`` on a lock file beside the object, re-reads the object under it and renames
the new one into place, so writers in any thread or process on this host are serialised.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

from lambda_contracts.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageCheckError,
    Versioned,
    hidden,
    validate_key,
    validate_prefix,
)


def content_etag(data: bytes) -> str:
    """The etag of some bytes: their MD5, as S3 computes it for a single PUT.

    A content hash means the same bytes have the same etag; for a pointer that is what CAS
    needs (a writer that expects "A" may replace "A", whoever wrote it).
    """
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(directory: Path) -> None:
    """mkdir -p that also fsyncs the parent of each directory it creates, so a file renamed
    into a new directory is still reachable after a crash."""
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir()
        if not path.is_dir():
            raise NotADirectoryError(f"{path} exists and is not a directory")
        _fsync_dir(path.parent)


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def describe(self) -> str:
        return f"local directory {self.root}"

    def _file(self, key: str) -> Path:
        return self.root / validate_key(key)

    # --- whole objects ------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> str:
        self._replace(self._file(key), data)
        return content_etag(data)

    def _replace(self, target: Path, data: bytes) -> None:
        _make_dirs(target.parent)
        # Unique per call, not per process: threads may write the same key at once.
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
        try:
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def get(self, key: str) -> bytes:
        try:
            return self._file(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in {self.describe()}") from None

    def get_versioned(self, key: str) -> Versioned | None:
        try:
            data = self.get(key)
        except ObjectNotFound:
            return None
        return Versioned(data, content_etag(data))

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()

    def delete(self, key: str) -> None:
        path = self._file(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        _fsync_dir(path.parent)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        validate_prefix(prefix)
        # Walk only the deepest directory the prefix names completely.
        base_key = prefix.rpartition("/")[0]
        base = self.root / base_key if base_key else self.root
        found = [
            ObjectInfo(key, size, modified_ms)
            for key, size, modified_ms in self._walk(base, base_key)
            if key.startswith(prefix) and not hidden(key)
        ]
        return sorted(found, key=lambda info: info.key)

    def list_dirs(self, prefix: str) -> list[str]:
        validate_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"list_dirs needs a directory prefix ending in '/': {prefix!r}")
        try:
            entries = list(os.scandir(self.root / prefix))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            f"{prefix}{e.name}/"
            for e in entries
            if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
        )

    def _walk(self, directory: Path, key_prefix: str) -> Iterator[tuple[str, int, int]]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            key = f"{key_prefix}/{entry.name}" if key_prefix else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._walk(Path(entry.path), key)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    yield key, st.st_size, st.st_mtime_ns // 1_000_000
            except FileNotFoundError:  # removed while we listed: it is simply not there
                continue

    def delete_prefix(self, prefix: str) -> None:
        if not prefix.endswith("/"):
            raise ValueError(f"delete_prefix needs a directory prefix ending in '/': {prefix!r}")
        directory = self._file(prefix.rstrip("/"))
        shutil.rmtree(directory, ignore_errors=True)
        if directory.parent.is_dir():
            _fsync_dir(directory.parent)

    def make_durable(self, keys: list[str]) -> None:
        directories = set()
        for key in keys:
            path = self._file(key)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            directories.update(p for p in path.parents if self.root in p.parents or p == self.root)
        for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
            _fsync_dir(directory)

    # --- compare-and-swap ---------------------------------------------------------------
    def cas(self, key: str, expected_etag: str | None, data: bytes) -> str | None:
        target = self._file(key)
        _make_dirs(target.parent)
        with self._locked(target):
            current = self.get_versioned(key)
            current_etag = current.etag if current else None
            if current_etag != expected_etag:
                return None
            self._replace(target, data)
        return content_etag(data)

    @contextlib.contextmanager
    def _locked(self, target: Path) -> Iterator[None]:
        # flock locks belong to the open file description, so they exclude other threads
        # of this process as well as other processes; the kernel drops them if we die.
        lock = target.with_name(f".{target.name}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- Arrow and start-up -------------------------------------------------------------
    def filesystem(self) -> pafs.FileSystem:
        return pafs.LocalFileSystem()

    def path(self, key: str) -> str:
        return str(self._file(key))

    def check(self) -> None:
        try:
            _make_dirs(self.root)
        except OSError as exc:
            raise StorageCheckError(f"cannot create {self.describe()}: {exc}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageCheckError(f"{self.describe()} is not writable by this user")
