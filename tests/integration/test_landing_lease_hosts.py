"""The readers' lease holds across hosts: a batch job reading on one host keeps compaction on
another from deleting what it may open, though the two share nothing but the object store.

Each side runs in a network namespace of its own, with a private tmpfs mounted on the *same*
``LAMBDA_DATA_DIR`` path: what one host writes there (a lock file, say) the other cannot see.
The store is versitygw on the bridge's address, reached over the namespaces' links.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.cluster import netns
from infra.cluster.topology import Network
from infra.s3_server import S3Server, start_s3_server
from lambda_contracts.layout import Layout
from tests.support.ports import S3_PORT
from tests.support.small_landing_files import BUCKET_MS, land_small_files, read_listed
from tests.support.stores import s3_store

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None,
        reason="needs root, iproute2 and unshare",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
NET = Network(prefix="llh-", subnet="10.213.82.0/24")
READER, COMPACTOR = "airflow", "spark-master"  # a batch job's driver; a second scheduler
BUCKET = "lease-hosts"
PORT = S3_PORT + 7  # on the bridge's address, not the session's S3 server's
SHARED_PATH = "/var/tmp/lambda-lease-hosts-data"  # each host mounts its own tmpfs here

READER_SCRIPT = """
import sys
from pathlib import Path
from lambda_contracts.landing_lock import reading_landing
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings

settings = Settings()
(settings.data_dir / "reader-was-here").write_text("a lock file would be here")
layout = Layout.of(settings)
with reading_landing(layout):
    print(len(layout.landing_files()), flush=True)
    sys.stdin.read()  # reading, until told the job is done
"""

COMPACTOR_SCRIPT = f"""
import json
from batch_layer.compaction import compact
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings

settings = Settings()
done = compact(Layout.of(settings), below_ms={2 * BUCKET_MS})
seen = (settings.data_dir / "reader-was-here").exists()
print(json.dumps({{"deleted": done.deleted, "kept": done.kept_for_readers, "seen": seen}}))
"""


def on_host(host: str, script: str) -> list[str]:
    """``python -c script`` on ``host``, in a mount namespace of its own with a private tmpfs
    on SHARED_PATH (the data directory every side is told to use)."""
    mount = 'mkdir -p "$0" && mount -t tmpfs -o size=16m tmpfs "$0" && exec "$@"'
    private = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, SHARED_PATH]
    return netns.exec_argv(NET, host, [*private, sys.executable, "-c", script])


@pytest.fixture
def store_on_the_bridge(tmp_path: Path) -> Iterator[S3Server]:
    netns.down(NET)  # a leftover of an interrupted run
    netns.up(NET, [READER, COMPACTOR])
    server = None
    try:
        server = start_s3_server(
            tmp_path / "s3", PORT, "lease-key", "lease-secret", NET.gateway(), (BUCKET,)
        )
        yield server
    finally:
        if server is not None:
            server.stop()
        netns.down(NET)


def test_a_reader_on_another_host_keeps_what_it_may_read(
    store_on_the_bridge: S3Server, tmp_path: Path
) -> None:
    server = store_on_the_bridge
    store = s3_store(server)
    layout = Layout(tmp_path / "test-host", store)
    landed = land_small_files(layout)
    listed = layout.landing_files()
    location = store.config.location
    env = {
        **os.environ,
        "LAMBDA_DATA_DIR": SHARED_PATH,
        "LAMBDA_STORAGE_URL": f"s3://{location.bucket}/{location.prefix}",
        "LAMBDA_S3_ENDPOINT": server.endpoint,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "PYTHONPATH": str(ROOT),
    }

    def compaction() -> dict[str, int | bool]:
        done = subprocess.run(
            on_host(COMPACTOR, COMPACTOR_SCRIPT), env=env, cwd=ROOT,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    job = subprocess.Popen(
        on_host(READER, READER_SCRIPT), env=env, cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert job.stdout is not None and int(job.stdout.readline()) == len(listed)
        during = compaction()
        assert during["seen"] is False, "the hosts share the data directory: not a fair test"
        assert during["deleted"] == 0 and during["kept"] > 0
        assert all(store.exists(key) for key in listed), "a file the reader may open is gone"
    finally:
        assert job.stdin is not None
        job.stdin.close()
        assert job.wait(timeout=30) == 0
    assert store.list("landing/_readers/") == []  # the reader released its lease
    after = compaction()
    assert after["deleted"] == during["kept"]
    assert read_listed(layout) == Counter(set(landed))  # every row, once, after compaction
