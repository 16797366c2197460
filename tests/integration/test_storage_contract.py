"""The storage contract, proven the same way on both backends: a local directory and S3.

Every test taking ``store`` runs once per backend; the S3 runs talk to a real S3 server
(versitygw, started once per session by the ``s3_server`` fixture) and are marked
``integration``. Nothing here needs Kafka.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from infra.s3_server import S3Server
from lambda_contracts.settings import Settings
from lambda_contracts.storage import (
    LocalStore,
    ObjectNotFound,
    ObjectStore,
    S3Location,
    StorageCheckError,
    open_store,
)
from tests.support.stores import s3_store


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return s3_store(request.getfixturevalue("s3_server"))


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``count`` threads; re-raise the first error any of them hit."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def payload(n: int, size: int) -> bytes:
    """Self-describing bytes: a header (n, size) and a fill derived from n, so any torn,
    truncated or mixed read is detectable by ``assert_whole``."""
    return struct.pack(">II", n, size) + bytes([n % 251]) * (size - 8)


def assert_whole(data: bytes) -> int:
    n, size = struct.unpack(">II", data[:8])
    assert len(data) == size, f"torn read: {len(data)} bytes of {size}"
    assert data[8:] == bytes([n % 251]) * (size - 8), "mixed content"
    return n


# --- whole objects ---------------------------------------------------------------------------


def test_put_then_get_returns_the_whole_object(store: ObjectStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    etag = store.put("landing/bucket=0/p0-0-9.parquet", data)

    assert store.get("landing/bucket=0/p0-0-9.parquet") == data
    versioned = store.get_versioned("landing/bucket=0/p0-0-9.parquet")
    assert versioned is not None
    assert versioned.data == data
    assert versioned.etag == etag


def test_overwrite_replaces_the_object_entirely(store: ObjectStore) -> None:
    first = store.put("k/obj", b"a much longer first version of the object")
    second = store.put("k/obj", b"short")

    assert store.get("k/obj") == b"short"  # no tail of the longer version survives
    assert first != second
    assert [(i.key, i.size) for i in store.list("k/")] == [("k/obj", 5)]


def test_empty_object_is_an_object(store: ObjectStore) -> None:
    store.put("markers/_SEALED", b"")
    assert store.exists("markers/_SEALED")
    assert store.get("markers/_SEALED") == b""
    assert [(i.key, i.size) for i in store.list("markers/")] == [("markers/_SEALED", 0)]


def test_missing_object(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("nowhere/obj")
    assert store.get_versioned("nowhere/obj") is None
    assert not store.exists("nowhere/obj")


def test_exists_is_about_objects_not_prefixes(store: ObjectStore) -> None:
    store.put("a/b/c", b"x")
    assert store.exists("a/b/c")
    assert not store.exists("a/b")  # a "directory" on the local disk, nothing on S3
    assert not store.exists("a/b/c/d")


def test_delete_removes_the_object_and_is_idempotent(store: ObjectStore) -> None:
    store.put("d/one", b"1")
    store.put("d/two", b"22")

    store.delete("d/one")
    store.delete("d/one")  # a retried delete is not an error
    store.delete("d/never-existed")

    assert not store.exists("d/one")
    with pytest.raises(ObjectNotFound):
        store.get("d/one")
    assert [(i.key, i.size) for i in store.list("d/")] == [("d/two", 2)]


def test_delete_prefix_removes_a_whole_directory_and_nothing_beside_it(
    store: ObjectStore, tmp_path: Path
) -> None:
    for key in ("v/1/view/part-0.parquet", "v/1/view/_SUCCESS", "v/1/manifest.json", "v/10/x"):
        store.put(key, b"x")
    if isinstance(store, LocalStore):  # what Hadoop's local file system writes beside a file
        (store.root / "v" / "1" / "view" / ".part-0.parquet.crc").write_bytes(b"crc")
    store.delete_prefix("v/1/")
    store.delete_prefix("v/1/")  # idempotent
    assert [i.key for i in store.list("v/")] == ["v/10/x"]
    if isinstance(store, LocalStore):
        assert not (store.root / "v" / "1").exists()
    with pytest.raises(ValueError):
        store.delete_prefix("v/10")  # not a directory prefix: refused, nothing deleted
    assert store.exists("v/10/x")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "a/./b", ".hidden", "a/.tmp", "a/"])
def test_invalid_keys_are_refused_everywhere(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.put(key, b"x")
    with pytest.raises(ValueError):
        store.get(key)


# --- listing ---------------------------------------------------------------------------------

LANDED = {
    "landing/bucket=1/p0-0-9.parquet": b"0" * 10,
    "landing/bucket=1/p1-0-4.parquet": b"1" * 5,
    "landing/bucket=10/p0-10-19.parquet": b"2" * 20,
    "landing/_progress/partition=0.json": b"{}",
    "batch/CURRENT": b"{}" * 3,
}


def test_list_by_prefix_is_recursive_sorted_and_sized(store: ObjectStore) -> None:
    for key, data in LANDED.items():
        store.put(key, data)

    def listed(prefix: str) -> list[tuple[str, int]]:
        return [(i.key, i.size) for i in store.list(prefix)]

    assert listed("") == sorted((k, len(v)) for k, v in LANDED.items())
    assert listed("landing/bucket=1/") == [
        ("landing/bucket=1/p0-0-9.parquet", 10),
        ("landing/bucket=1/p1-0-4.parquet", 5),
    ]
    # A prefix is a string prefix of keys, as on S3: bucket=1 also matches bucket=10.
    assert [k for k, _ in listed("landing/bucket=1")] == [
        "landing/bucket=1/p0-0-9.parquet",
        "landing/bucket=1/p1-0-4.parquet",
        "landing/bucket=10/p0-10-19.parquet",
    ]
    assert listed("landing/_progress/") == [("landing/_progress/partition=0.json", 2)]
    assert listed("batch/CURRENT") == [("batch/CURRENT", 6)]


def test_list_dirs_names_the_directories_one_level_down(store: ObjectStore) -> None:
    for key, data in LANDED.items():
        store.put(key, data)
    assert store.list_dirs("landing/") == [
        "landing/_progress/",
        "landing/bucket=1/",
        "landing/bucket=10/",
    ]
    assert store.list_dirs("") == ["batch/", "landing/"]
    assert store.list_dirs("landing/bucket=1/") == []  # files only below it
    assert store.list_dirs("nothing/") == []
    with pytest.raises(ValueError, match="ending in '/'"):
        store.list_dirs("landing/bucket=1")


@pytest.mark.parametrize("prefix", ["nothing/", "nothing", "landing/bucket=2/", "batch/CURRENT/"])
def test_list_without_matches_is_empty(store: ObjectStore, prefix: str) -> None:
    store.put("landing/bucket=1/p0-0-9.parquet", b"x")
    store.put("batch/CURRENT", b"x")
    assert store.list(prefix) == []


def test_list_of_an_empty_store_is_empty(store: ObjectStore) -> None:
    assert store.list("") == []
    assert store.list("landing/") == []


def test_listing_during_writes_shows_only_whole_objects(store: ObjectStore) -> None:
    """Temporary files of a write in progress never show up, nor do partial sizes."""
    sizes = {8 + 4096 * (i % 7) for i in range(40)}
    done = threading.Event()

    def writer(_: int) -> None:
        try:
            for i in range(40):
                store.put("w/obj", payload(i, 8 + 4096 * (i % 7)))
        finally:
            done.set()

    def lister(_: int) -> None:
        while not done.is_set():
            for info in store.list("w/"):
                assert info.key == "w/obj"
                assert info.size in sizes

    run_threads(2, lambda i: writer(i) if i == 0 else lister(i))
    assert_whole(store.get("w/obj"))


# --- compare-and-swap ------------------------------------------------------------------------


def test_cas_create_if_absent_wins_once(store: ObjectStore) -> None:
    etag = store.cas("batch/CURRENT", None, b"v1")
    assert etag is not None
    assert store.cas("batch/CURRENT", None, b"v2") is None
    assert store.get("batch/CURRENT") == b"v1"
    versioned = store.get_versioned("batch/CURRENT")
    assert versioned is not None and versioned.etag == etag


def test_cas_replaces_only_from_the_current_etag(store: ObjectStore) -> None:
    first = store.cas("p/CURRENT", None, b"v1")
    assert first is not None
    second = store.cas("p/CURRENT", first, b"v2")
    assert second is not None

    assert store.cas("p/CURRENT", first, b"stale writer") is None
    assert store.get("p/CURRENT") == b"v2"

    third = store.cas("p/CURRENT", second, b"v3")
    assert third is not None
    assert store.get("p/CURRENT") == b"v3"


def test_cas_with_an_etag_on_a_missing_object_loses(store: ObjectStore) -> None:
    etag = store.put("elsewhere", b"v1")
    assert store.cas("p/missing", etag, b"v2") is None
    assert not store.exists("p/missing")


def test_cas_after_delete_is_a_create(store: ObjectStore) -> None:
    etag = store.cas("p/ptr", None, b"v1")
    store.delete("p/ptr")
    assert store.cas("p/ptr", etag, b"v2") is None
    assert store.cas("p/ptr", None, b"v3") is not None
    assert store.get("p/ptr") == b"v3"


WRITERS = 6


def race(store: ObjectStore, key: str, expected: str | None, first_n: int) -> dict[int, str | None]:
    """WRITERS threads released together, each trying ``cas(key, expected, payload(first_n+i))``;
    returns what each got back."""
    barrier = threading.Barrier(WRITERS)
    results: dict[int, str | None] = {}

    def attempt(i: int) -> None:
        barrier.wait()
        results[first_n + i] = store.cas(key, expected, payload(first_n + i, 64 + i))

    run_threads(WRITERS, attempt)
    return results


def test_racing_creators_exactly_one_wins(store: ObjectStore) -> None:
    results = race(store, "race/CURRENT", None, first_n=1)

    winners = [n for n, etag in results.items() if etag is not None]
    assert len(winners) == 1, results
    assert assert_whole(store.get("race/CURRENT")) == winners[0]


def test_racing_writers_from_the_same_etag_exactly_one_wins(store: ObjectStore) -> None:
    etag = store.cas("race/CURRENT", None, payload(0, 64))
    for round_ in range(1, 4):
        assert etag is not None
        results = race(store, "race/CURRENT", etag, first_n=round_ * 100)

        winners = [n for n, new in results.items() if new is not None]
        assert len(winners) == 1, f"round {round_}: {results}"
        assert assert_whole(store.get("race/CURRENT")) == winners[0]
        etag = results[winners[0]]
        versioned = store.get_versioned("race/CURRENT")
        assert versioned is not None and versioned.etag == etag


def test_readers_during_cas_see_a_whole_old_or_new_value(store: ObjectStore) -> None:
    updates = 30
    etag = store.cas("ptr/CURRENT", None, payload(0, 8))
    assert etag is not None
    done = threading.Event()
    seen: list[int] = []

    def writer() -> None:
        current = etag
        try:
            for n in range(1, updates + 1):
                # Sizes jump up and down so a torn read shows as a wrong length.
                current = store.cas("ptr/CURRENT", current, payload(n, 8 + 8192 * (n % 5)))
                assert current is not None, "the only writer lost a CAS"
        finally:
            done.set()

    def reader() -> None:
        while not done.is_set():
            versioned = store.get_versioned("ptr/CURRENT")
            assert versioned is not None, "the pointer vanished during a CAS"
            seen.append(assert_whole(versioned.data))

    run_threads(2, lambda i: writer() if i == 0 else reader())

    assert seen == sorted(seen), "a reader went back in time"
    assert assert_whole(store.get("ptr/CURRENT")) == updates


# --- Parquet through the Arrow filesystem ----------------------------------------------------


def test_parquet_put_as_an_object_reads_through_the_arrow_filesystem(store: ObjectStore) -> None:
    tables = {
        "views/v1/part-0.parquet": pa.table({"account": ["a", "b"], "amount": [10, 20]}),
        "views/v1/part-1.parquet": pa.table({"account": ["a"], "amount": [5]}),
    }
    for key, table in tables.items():
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        store.put(key, buffer.getvalue())

    fs = store.filesystem()
    assert pq.read_table(store.path("views/v1/part-1.parquet"), filesystem=fs).equals(
        tables["views/v1/part-1.parquet"]
    )
    dataset = ds.dataset([store.path(i.key) for i in store.list("views/v1/")], filesystem=fs)
    arrow_table = dataset.to_table()  # noqa: F841 (read by DuckDB below through Arrow)
    totals = duckdb.sql(
        "select account, sum(amount) from arrow_table group by account order by account"
    ).fetchall()
    assert totals == [("a", 15), ("b", 20)]


# --- choosing the backend, and the start-up check --------------------------------------------


def test_settings_choose_the_local_data_dir_by_default(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path / "data"))
    assert isinstance(store, LocalStore)
    store.check()
    store.put("landing/x", b"1")
    assert (tmp_path / "data" / "landing" / "x").read_bytes() == b"1"


def test_local_check_names_an_unusable_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StorageCheckError, match="cannot create"):
        LocalStore(tmp_path / "file" / "data").check()


def test_invalid_storage_url_is_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        Settings(storage_url="/var/data")
    with pytest.raises(ValueError, match="bucket name"):
        Settings(storage_url="s3://No_Such")


@pytest.mark.integration
def test_settings_choose_s3_with_credentials_from_the_environment(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        data_dir=tmp_path / "data",
        storage_url=f"s3://{s3_server.buckets[0]}/{prefix}/",
        s3_endpoint=s3_server.endpoint,
    )
    store = open_store(settings)
    store.check()
    store.put("landing/x", b"1")

    assert not (tmp_path / "data").exists()  # nothing went to the local disk
    assert (s3_server.root / s3_server.buckets[0] / prefix / "landing" / "x").read_bytes() == b"1"
    assert store.path("landing/x").endswith(f"{prefix}/landing/x")


@pytest.mark.integration
def test_s3_prefixes_do_not_leak_into_each_other(s3_server: S3Server) -> None:
    data = s3_store(s3_server)
    sibling = s3_store(
        s3_server, location=S3Location(s3_server.buckets[0], data.config.location.prefix + "2")
    )
    data.put("k", b"mine")
    sibling.put("k", b"sibling")
    assert [i.key for i in data.list("")] == ["k"]
    assert data.get("k") == b"mine"


@pytest.mark.integration
def test_s3_check_passes_on_a_good_configuration(s3_server: S3Server) -> None:
    s3_store(s3_server).check()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_s3_check_names_an_unreachable_endpoint(s3_server: S3Server) -> None:
    store = s3_store(s3_server, endpoint=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(StorageCheckError, match="unreachable"):
        store.check()


@pytest.mark.integration
def test_s3_check_names_a_missing_bucket(s3_server: S3Server) -> None:
    with pytest.raises(StorageCheckError, match="bucket 'no-such-bucket' does not exist"):
        s3_store(s3_server, bucket="no-such-bucket").check()


@pytest.mark.integration
def test_s3_check_names_wrong_credentials(s3_server: S3Server) -> None:
    with pytest.raises(StorageCheckError, match="refused the credentials"):
        s3_store(s3_server, secret_key="wrong-secret").check()
    with pytest.raises(StorageCheckError, match="refused the credentials"):
        s3_store(s3_server, access_key="nobody").check()
