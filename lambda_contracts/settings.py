"""One settings class for the whole platform, read from ``LAMBDA_*`` environment variables.

Defaults run everything on this machine (Kafka on 127.0.0.1:9092, SQLite under ``data/``), so
local mode needs no configuration; docker compose and tests override through the environment.

Secrets (``SecretStr`` fields, e.g. the API token) reach a child process only when it needs
them: ``as_env()`` leaves them out unless asked, and :mod:`lambda_contracts.secret_env` keeps
them out of inherited environments. URLs are printed through ``masked_url``.
"""

from __future__ import annotations

import json
import typing
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from sqlalchemy.engine import make_url

from lambda_contracts.dedup import DEFAULT_DEDUP_HORIZON_MS
from lambda_contracts.settings_base import CONFIG, SettingsGroup
from lambda_contracts.settings_kafka import KafkaSettings
from lambda_contracts.storage_url import parse_s3_url
from lambda_contracts.view_declarations import DEFAULT_VIEWS_FILE

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class StorageSettings(SettingsGroup):
    """Where the platform keeps its files: this host's directories, or S3."""

    data_dir: Path = Field(
        default=PROJECT_ROOT / "data",
        description="what the platform keeps on this host: Kafka's log, Airflow's home, logs, "
        "pid files, the SQLite speed store, and the master dataset and batch versions unless "
        "storage_url is set",
    )
    logs_dir: Path | None = Field(
        default=None, description="one log file per service, <service>.log; None: data_dir/logs"
    )

    storage_url: str | None = Field(
        default=None,
        description="s3://bucket/prefix: the master dataset, batch versions and CURRENT on "
        "S3-compatible storage; None: data_dir",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="S3 API URL of a server other than AWS (path-style addressing), e.g. "
        "http://127.0.0.1:7070; None: AWS",
    )
    s3_region: str = Field(
        default="us-east-1",
        description="S3 region; keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or "
        "the rest of the AWS chain",
    )

    @field_validator("storage_url")
    @classmethod
    def _valid_storage_url(cls, url: str | None) -> str | None:
        if url is not None:
            parse_s3_url(url)  # a typo stops the process here, not at the first write
        return url


class IngestSettings(SettingsGroup):
    """The ingest buckets and the dedup horizon: one contract for both layers."""

    bucket_ms: int = Field(
        default=300_000,
        ge=1000,
        description="ingest bucket size: Kafka timestamps are floored to it, and the batch "
        "horizon moves by whole buckets",
    )
    dedup_horizon_ms: int = Field(
        default=DEFAULT_DEDUP_HORIZON_MS,
        ge=0,
        description="dedup horizon D, see lambda_contracts.dedup",
    )
    views_file: Path = Field(
        default=DEFAULT_VIEWS_FILE,
        description="the views file (TOML): views declared beside the built-in ones; a "
        "missing file declares none (docs/contracts.md#the-views-file)",
    )


class SpeedSettings(SettingsGroup):
    """The speed-layer processes: consumer group, store, polling, landing, health."""

    speed_group: str = Field(
        default="speed-layer", description="consumer group of the speed processes"
    )
    speed_processes: int = Field(
        default=2,
        ge=1,
        description="speed-layer processes `make up` starts in the group: with two, the other "
        "takes a stopped one's partitions at once; each overlaps its store transactions on a "
        "second core, so on a 2-core machine two catch up no faster than one "
        "(bench/speed_layer_bench.py --processes)",
    )
    speed_store_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the speed store, e.g. postgresql+psycopg://user@host/db; "
        "None: SQLite at data_dir/speed/speed.db",
    )
    speed_max_poll_records: int = Field(
        default=20_000,
        ge=1,
        description="records per poll batch, one store transaction each: with 20,000 a "
        "process catches up ~5% faster than with 10,000 and ~1.2x faster than with 5,000 "
        "(bench/speed_layer_bench.py); a poll returns what is fetched, up to this",
    )
    speed_fetch_min_bytes: int = Field(
        default=16_384,
        ge=1,
        description="a fetch waits for this much (or speed_fetch_max_wait_ms): at a low "
        "rate, a few records per poll and store transaction instead of one each",
    )
    speed_fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        description="longest a fetch waits for speed_fetch_min_bytes: what a record may wait "
        "before it is counted, at a low rate",
    )
    speed_metrics_port: int = Field(
        default=9464,
        description="port of the first speed process's /metrics and /readyz; process N listens "
        "on this port + N",
    )
    speed_metrics_host: str = Field(
        default="127.0.0.1",
        description="address of the speed layer's /metrics and /readyz (0.0.0.0 on a cluster "
        "host, for the scraper and the health checks of other hosts)",
    )
    landing_flush_ms: int = Field(default=2000, ge=50, description="max age of unlanded records")
    landing_flush_records: int = Field(
        default=50_000,
        ge=1,
        description="records buffered per partition before they are landed, whatever their age",
    )
    speed_unhealthy_after_s: float = Field(
        default=30.0, gt=0, description="no progress with records waiting: report unhealthy"
    )
    speed_exit_after_s: float = Field(
        default=120.0, gt=0, description="no progress with records waiting: exit for a restart"
    )
    speed_idle_exit_extra_s: float = Field(
        default=300.0,
        ge=0,
        description="extra patience of a process that owns no partition (a rebalance held open)",
    )
    idle_seal_grace_ms: int | None = Field(
        default=None,
        ge=0,
        description="margin for broker clock skew and replication delay when sealing idle "
        "partitions by broker time; None: 1 s with replication factor 1, else 35 s (a "
        "follower may hold the high watermark back for replica.lag.time.max.ms, 30 s)",
    )

    @property
    def speed_store_url_masked(self) -> str | None:
        """The speed store URL fit for a terminal or a log: its password masked."""
        return masked_url(self.speed_store_url)


class BatchSettings(SettingsGroup):
    """The Spark recompute job and the batch schedule."""

    spark_master: str = Field(
        default="local[2]", description="Spark master URL: local[N], spark://host:7077, yarn"
    )
    spark_driver_memory: str = Field(default="2g", description="driver memory of the Spark job")
    spark_driver_host: str | None = Field(
        default=None, description="address executors use to reach the driver (cluster masters)"
    )
    spark_shuffle_partitions: int = Field(
        default=4,
        ge=1,
        description="spark.sql.shuffle.partitions and spark.default.parallelism of the job",
    )
    spark_s3a_jars: Path = Field(
        default=Path.home() / ".cache" / "lambda-platform" / "spark-s3a",
        description="hadoop-aws and the AWS SDK bundle (infra/spark/pom.xml fetches them)",
    )
    spark_java_home: Path | None = Field(
        default=None,
        description="JDK of the job; None: the newest Spark supports (local), else JAVA_HOME",
    )
    spark_jvm_cache_dir: Path = Field(
        default=Path.home() / ".cache" / "lambda-platform" / "spark-jvm",
        description="the job JVM's AOT caches (JDK 25+), trained once by make spark-jvm",
    )
    batch_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="CPU nice of batch work on a shared host (Airflow, spark-submit, the DAG "
        "tasks), so that serving and the speed layer come first; 0: no change",
    )
    batch_keep_versions: int = Field(
        default=5,
        ge=1,
        description="validated batch versions kept for rollback, with the speed rows they need",
    )
    batch_schedule_minutes: int = Field(
        default=5, ge=1, description="schedule of the lambda_batch DAG"
    )

    @property
    def spark_runs_locally(self) -> bool:
        """``local[...]``: the whole batch job is one JVM on this host."""
        return self.spark_master.startswith("local")


class ClusterSettings(SettingsGroup):
    """The hosts of ``make cluster-up`` (network namespaces)."""

    cluster_prefix: str = Field(
        default="lambda-", description="names of make cluster-up's namespaces and bridge"
    )
    cluster_subnet: str = Field(
        default="10.213.77.0/24", description="addresses of make cluster-up's hosts"
    )
    cluster_kafka_security: Literal["plaintext", "sasl_ssl"] = Field(
        default="plaintext",
        description="sasl_ssl: the cluster's Kafka with TLS and SCRAM between its hosts, the "
        "authorizer on and a user per host (infra/cluster/kafka_security.py)",
    )


class ServingSettings(SettingsGroup):
    """The serving API, lambda-serve."""

    api_host: str = Field(
        default="127.0.0.1",
        description="address lambda-serve listens on (0.0.0.0 on a cluster host)",
    )
    api_port: int = Field(default=8000, description="port lambda-serve listens on")
    api_token: SecretStr | None = Field(
        default=None,
        description="when set, /v1 needs Authorization: Bearer <token>; never passed to Spark jobs",
    )
    api_cors_origins: list[str] = Field(
        default_factory=list,
        description="origins CORS allows (a JSON list); empty: CORS off",
    )
    airflow_ui_url: str = Field(
        default="http://127.0.0.1:8080",
        description="the Airflow UI as a browser reaches it: the dashboard links each batch "
        "run there",
    )
    api_workers: int = Field(
        default=2,
        ge=1,
        description="uvicorn worker processes of lambda-serve (2 measured best on 2 cores, "
        "bench/README.md)",
    )
    api_batch_cache_rows: int = Field(
        default=500_000,
        ge=0,
        description="rows of batch answer parts each serving worker keeps for the CURRENT "
        "version (0: no cache)",
    )
    api_history_sample_s: float = Field(
        default=5.0,
        ge=0,
        description="each serving worker samples watermarks, horizon and lag this often for the "
        "dashboard's time panel, keeping the last hour (0: no sampling)",
    )


class MonitoringSettings(SettingsGroup):
    """Prometheus beside the platform (infra/prometheus: scrape configuration and alerts)."""

    prometheus_enabled: bool = Field(
        default=False,
        description="make up also starts the prometheus binary (Debian: apt-get install -y "
        "prometheus) on 127.0.0.1:prometheus_port, scraping every service of local mode with "
        "the alert rules of infra/prometheus/alerts.yml; its data under data_dir/prometheus",
    )
    prometheus_port: int = Field(
        default=9090, description="port of local mode's Prometheus (prometheus_enabled)"
    )


class UpkeepSettings(SettingsGroup):
    """What keeps a platform left running for weeks within its disk: logs and run records."""

    log_max_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1024,
        description="local mode: a service's log larger than this is rotated (copied to "
        "<service>.log.1 and truncated) by the keeper",
    )
    log_keep: int = Field(
        default=5, ge=1, description="local mode: rotated copies kept of each service's log"
    )
    airflow_retention_days: float = Field(
        default=14,
        gt=0,
        description="Airflow's upkeep (lambda-platform airflow-upkeep) deletes task logs and "
        "run records older than this (a fraction of a day is allowed)",
    )
    airflow_upkeep_interval_s: float = Field(
        default=3600,
        ge=1,
        description="seconds between two passes of Airflow's upkeep",
    )


# pydantic orders the fields from the last base to the first: these are listed last-first so
# that the fields (and docs/settings.md) read storage, Kafka, ingest, speed, batch, cluster,
# serving, monitoring, upkeep.
class Settings(
    UpkeepSettings,
    MonitoringSettings,
    ServingSettings,
    ClusterSettings,
    BatchSettings,
    SpeedSettings,
    IngestSettings,
    KafkaSettings,
    StorageSettings,
):
    """Every setting of the platform, one group of fields per concern (the bases)."""

    model_config = CONFIG

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        self.data_dir = self.data_dir.resolve()
        if self.logs_dir is None:
            self.logs_dir = self.data_dir / "logs"
        if self.speed_store_url is None:
            self.speed_store_url = f"sqlite:///{self.data_dir / 'speed' / 'speed.db'}"
        if self.idle_seal_grace_ms is None:
            self.idle_seal_grace_ms = 1_000 if self.replication_factor == 1 else 35_000
        return self

    @classmethod
    def secret_env_names(cls) -> frozenset[str]:
        """The ``LAMBDA_*`` variables that hold secrets (the ``SecretStr`` fields)."""
        return frozenset(
            f"LAMBDA_{name.upper()}"
            for name, info in cls.model_fields.items()
            if info.annotation is SecretStr or SecretStr in typing.get_args(info.annotation)
        )

    def as_env(self, include_secrets: bool = False) -> dict[str, str]:
        """These settings as ``LAMBDA_*`` variables, for a child process (spark-submit, CLIs).

        Secrets are left out unless the child needs them (``include_secrets``): a Spark job
        or a batch task has no use for the API token, and its environment is widely visible
        (Spark UI, process listings, task logs).
        """
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                if not include_secrets:
                    continue
                value = value.get_secret_value()
            elif isinstance(value, list):
                value = json.dumps(value)
            env[f"LAMBDA_{name.upper()}"] = str(value)
        return env


def masked_url(url: str | None) -> str | None:
    """A database URL fit for logs and terminals: the password replaced by ``***``."""
    if url is None:
        return None
    return make_url(url).render_as_string(hide_password=True)


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
