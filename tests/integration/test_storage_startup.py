"""Storage at start-up: the local S3 server ``make up`` runs, and a bad setting stops a process
with one clear line and exit 78, which the keeper does not restart."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.keeper import Keeper, read_record
from infra.s3_server import local_s3_server, local_s3_service
from infra.supervisor import Service, ServiceError, Supervisor
from lambda_contracts.settings import Settings
from lambda_contracts.startup import EXIT_CONFIG, checked_layout
from tests.support.pipeline import BIN, env_for

pytestmark = [pytest.mark.integration]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_settings(tmp_path: Path, port: int) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        logs_dir=tmp_path / "logs",
        storage_url="s3://lambda-local/master",
        s3_endpoint=f"http://127.0.0.1:{port}",
    )


def test_the_local_s3_server_serves_the_configured_bucket_and_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local-secret")
    settings = s3_settings(tmp_path, free_port())
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    server = local_s3_server(settings, sup)
    assert server is not None and server.root == settings.data_dir / "s3"
    service = local_s3_service(server)
    pid = sup.start(service)
    try:
        layout = checked_layout(settings)  # the bucket exists, the credentials are accepted
        layout.store.put("landing/_progress/partition=0.json", b"{}")
        assert layout.store.get("landing/_progress/partition=0.json") == b"{}"
        # Its objects are plain files under the data directory (versitygw's posix backend).
        assert (settings.data_dir / "s3" / "lambda-local" / "master" / "landing").is_dir()
        assert sup.start(service) == pid  # idempotent, like every service of ``up``
    finally:
        sup.stop(service.name)
    assert sup.pid(service.name) is None and not service.healthy()


def test_no_local_server_for_remote_or_local_storage(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    assert local_s3_server(Settings(data_dir=tmp_path), sup) is None
    remote = Settings(storage_url="s3://bkt/p", s3_endpoint="http://10.0.0.5:9000")
    assert local_s3_server(remote, sup) is None
    assert local_s3_server(Settings(storage_url="s3://bkt/p"), sup) is None  # AWS itself


def test_the_local_s3_server_needs_credentials_and_says_which(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    server = local_s3_server(s3_settings(tmp_path, free_port()), sup)
    assert server is not None
    with pytest.raises(ServiceError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        sup.start(local_s3_service(server))


def test_an_unreachable_endpoint_stops_a_process_with_exit_78_and_one_clear_line(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there
    code = (
        "from lambda_contracts.settings import get_settings\n"
        "from lambda_contracts.startup import checked_layout\n"
        "checked_layout(get_settings())\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "LAMBDA_DATA_DIR": str(tmp_path / "data"),
        "LAMBDA_STORAGE_URL": "s3://lambda-local/master",
        "LAMBDA_S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == EXIT_CONFIG
    assert f"127.0.0.1:{port}" in done.stderr and "unreachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60  # a bounded check, not a hang


def test_the_keeper_leaves_a_service_down_that_exited_with_a_configuration_error(
    tmp_path: Path,
) -> None:
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    misconfigured = Service(
        name="misconfigured",
        command=lambda: [sys.executable, "-c", f"raise SystemExit({EXIT_CONFIG})"],
        healthy=lambda: True,
        start_timeout_s=10,
    )
    flaky = Service(
        name="flaky",
        command=lambda: [sys.executable, "-c", "raise SystemExit(1)"],
        healthy=lambda: True,
        start_timeout_s=10,
    )
    keeper = Keeper(sup, [misconfigured, flaky], backoff_max_s=0.2)
    for _ in range(3):  # start both, let them die, reap their exit codes
        keeper.check_once()
        time.sleep(1.0)
        keeper._reap()
    assert read_record(sup, "misconfigured").last_exit == EXIT_CONFIG
    assert read_record(sup, "misconfigured").restarts == 1  # started once, never again
    assert read_record(sup, "flaky").restarts >= 2  # an ordinary failure is restarted


def test_storage_init_creates_the_bucket_once_then_checks_it(s3_server, tmp_path: Path) -> None:
    """What compose's s3-init runs before the layers start."""
    env = {
        **env_for(Settings(data_dir=tmp_path / "data", logs_dir=tmp_path / "logs")),
        "LAMBDA_STORAGE_URL": "s3://lambda-init-test/master",
        "LAMBDA_S3_ENDPOINT": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    argv = [str(BIN / "lambda-platform"), "storage-init"]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and "bucket lambda-init-test: created" in first.stdout
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "bucket lambda-init-test: exists" in again.stdout
