"""A local S3 server: versitygw (Apache-2.0) serving a directory through its posix backend.

Tests and local multi-host runs use it as the S3-compatible store. It is a real S3 API server
that decides conditional PUTs (If-Match / If-None-Match) atomically, so the CAS of the storage
contract is exercised for real. Run under the project's Supervisor: its own process group,
a pid file and a log file, SIGTERM then SIGKILL on stop.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from infra.supervisor import Service, ServiceError, Supervisor
from lambda_contracts.settings import PROJECT_ROOT, Settings
from lambda_contracts.storage_url import parse_s3_url

BUILD_SCRIPT = PROJECT_ROOT / "infra" / "s3" / "build_versitygw.sh"
SERVICE = "s3"


def build_versitygw() -> Path:
    """The versitygw binary, built from source the first time (about 1.5 min), then cached."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building versitygw failed: {result.stderr.strip()}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class S3Server:
    """One running versitygw; ``root`` holds one sub-directory per bucket."""

    root: Path
    host: str
    port: int
    access_key: str
    secret_key: str
    supervisor: Supervisor
    binary: Path
    buckets: tuple[str, ...] = ()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--port", f"{self.host}:{self.port}",
            "--access", self.access_key,
            "--secret", self.secret_key,
            "--quiet",  # no per-request line in the log
            "posix",
            str(self.root),
        ]  # fmt: skip

    def answering(self) -> bool:
        """Whether the server answers HTTP at all (an anonymous request gets a 403: fine)."""
        try:
            httpx.get(self.endpoint, timeout=1)
        except httpx.HTTPError:
            return False
        return True

    def service(self) -> Service:
        return Service(
            name=SERVICE,
            command=self.command,
            healthy=self.answering,
            start_timeout_s=30,
            stop_timeout_s=10,
        )

    def start(self) -> None:
        if self.supervisor.pid(SERVICE) is None and self.answering():
            # Otherwise we would "start" against someone else's server on that port.
            raise RuntimeError(f"{self.endpoint} is already served by another process")
        self.root.mkdir(parents=True, exist_ok=True)
        self.supervisor.start(self.service())

    def stop(self) -> None:
        self.supervisor.stop(SERVICE, timeout_s=10)

    def create_bucket(self, name: str) -> None:
        """Create the bucket unless it exists (idempotent, like the service's other steps)."""
        ensure_bucket(self.endpoint, name, self.access_key, self.secret_key)


def ensure_bucket(
    endpoint: str | None,
    bucket: str,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str = "us-east-1",
) -> bool:
    """Create ``bucket`` unless it exists; True if it was created. Credentials None: the
    usual AWS chain."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import ClientError

    client = botocore.session.get_session().create_client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path" if endpoint else "auto"}),
    )
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise
    return True


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_s3_server(settings: Settings, supervisor: Supervisor) -> S3Server | None:
    """The S3 server ``make up`` runs itself: when the master dataset is on ``s3://`` and
    ``LAMBDA_S3_ENDPOINT`` is a plain-HTTP loopback address. Its objects live under
    ``<data dir>/s3``; it takes the credentials of the environment (AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY), the ones every client of the platform will present."""
    if settings.storage_url is None or settings.s3_endpoint is None:
        return None
    endpoint = urlsplit(settings.s3_endpoint)
    if endpoint.scheme != "http" or not endpoint.hostname or not _loopback(endpoint.hostname):
        return None
    return S3Server(
        root=settings.data_dir / "s3",
        host=endpoint.hostname,
        port=endpoint.port or 80,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", ""),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        supervisor=supervisor,
        binary=Path("versitygw"),  # built when the service starts
        buckets=(parse_s3_url(settings.storage_url).bucket,),
    )


def local_s3_service(server: S3Server) -> Service:
    """``server`` as a platform service: built on first start, its bucket created after."""

    def command() -> list[str]:
        if not server.access_key or not server.secret_key:
            raise ServiceError(
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: the local S3 server "
                f"at {server.endpoint} takes them as its credentials"
            )
        server.root.mkdir(parents=True, exist_ok=True)
        return replace(server, binary=build_versitygw()).command()

    def create_buckets() -> None:
        for bucket in server.buckets:
            server.create_bucket(bucket)

    return Service(
        name=SERVICE,
        command=command,
        healthy=server.answering,
        start_timeout_s=30,
        stop_timeout_s=10,
        after_start=create_buckets,
    )


def start_s3_server(
    directory: Path,
    port: int,
    access_key: str,
    secret_key: str,
    host: str = "127.0.0.1",
    buckets: tuple[str, ...] = (),
) -> S3Server:
    """Build versitygw if needed, serve ``directory/root`` on host:port, create the buckets.

    Pid file and log go to ``directory/run`` and ``directory/logs``.
    """
    server = S3Server(
        root=directory / "root",
        host=host,
        port=port,
        access_key=access_key,
        secret_key=secret_key,
        supervisor=Supervisor(directory / "run", directory / "logs"),
        binary=build_versitygw(),
        buckets=buckets,
    )
    server.start()
    try:
        for bucket in buckets:
            server.create_bucket(bucket)
    except Exception:
        server.stop()
        raise
    return server
