"""The cluster's hosts, their addresses and what runs on each: the one description that the
network script, the cluster commands and the compose file's test all read.

Every host is a Linux network namespace on a private bridge; a service listens on its host's
address with its usual port (``kafka-1:9092``, ``serving:8000``, ``airflow:8080``,
``spark-master:7077``, ``postgres:5432``, ``s3:7070``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Host:
    name: str  # also its DNS name inside the cluster
    services: tuple[str, ...]  # what runs on it (names of the compose services it mirrors)


HOSTS: tuple[Host, ...] = (
    Host("kafka-1", ("kafka-1",)),
    Host("kafka-2", ("kafka-2",)),
    Host("kafka-3", ("kafka-3",)),
    Host("postgres", ("postgres",)),
    Host("s3", ("s3",)),
    Host("spark-master", ("spark-master",)),
    Host("spark-worker-1", ("spark-worker-1",)),
    Host("spark-worker-2", ("spark-worker-2",)),
    Host(
        "airflow",
        (
            "airflow-apiserver",
            "airflow-scheduler",
            "airflow-dag-processor",
            "airflow-triggerer",
            "airflow-upkeep",
        ),
    ),
    Host("speed-1", ("speed-1",)),
    Host("speed-2", ("speed-2",)),
    Host("serving", ("serving",)),
    Host("producer", ("producer",)),
)

PORTS = {"kafka": 9092, "kafka-controller": 9093, "postgres": 5432, "s3": 7070}
PORTS |= {"spark-master": 7077, "airflow": 8080, "serving": 8000}

KAFKA_HOSTS = ("kafka-1", "kafka-2", "kafka-3")
BUCKET = "lambda"

# The settings every platform process of the cluster runs with (docker-compose.yml's x-app
# environment holds the same; a test keeps them equal).
CLUSTER_ENV: dict[str, str] = {
    "LAMBDA_KAFKA_BOOTSTRAP": ",".join(f"{h}:{PORTS['kafka']}" for h in KAFKA_HOSTS),
    "LAMBDA_REPLICATION_FACTOR": "3",
    "LAMBDA_MIN_INSYNC_REPLICAS": "2",
    "LAMBDA_SPARK_MASTER": f"spark://spark-master:{PORTS['spark-master']}",
    "LAMBDA_STORAGE_URL": f"s3://{BUCKET}/master",
    "LAMBDA_S3_ENDPOINT": f"http://s3:{PORTS['s3']}",
    # Other hosts read the speed layer's /readyz and /metrics.
    "LAMBDA_SPEED_METRICS_HOST": "0.0.0.0",
}

# PostgreSQL's logins (infra/db_roles.py): the administrator, whom only the postgres host's
# provisioning uses, and a role per service; each host gets its own role's URL in HOST_ENV.
DB_ADMIN_URL = f"postgresql+psycopg://postgres:postgres@postgres:{PORTS['postgres']}/postgres"
STORE_URLS = {
    role: f"postgresql+psycopg://lambda_{role}:{role}@postgres:{PORTS['postgres']}/lambda"
    for role in ("speed", "batch", "serving")
}
STORE_ROLE_OF_HOST = {"speed-1": "speed", "speed-2": "speed", "airflow": "batch"}
STORE_ROLE_OF_HOST |= {"serving": "serving"}

# Airflow's metadata lives in PostgreSQL on a cluster (SQLite in local mode); the async URL is
# explicit, or Airflow derives one for asyncpg, which is not installed.
AIRFLOW_DB = f"airflow:airflow@postgres:{PORTS['postgres']}/airflow"
AIRFLOW_ENV: dict[str, str] = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://{AIRFLOW_DB}",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg_async://{AIRFLOW_DB}",
    "AIRFLOW__API__HOST": "0.0.0.0",
}

# What a host adds to CLUSTER_ENV for its own services. Spark processes bind and name
# themselves by the host (the machine's own hostname does not resolve inside a host);
# the batch job's driver runs on ``airflow`` (LocalExecutor) and advertises that name.
SPARK_WORKER_ENV = {"SPARK_WORKER_CORES": "1", "SPARK_WORKER_MEMORY": "2g"}
HOST_ENV: dict[str, dict[str, str]] = {
    "speed-1": {"LAMBDA_SPEED_STORE_URL": STORE_URLS["speed"]},
    "speed-2": {"LAMBDA_SPEED_STORE_URL": STORE_URLS["speed"]},
    "airflow": {
        **AIRFLOW_ENV,
        "LAMBDA_SPEED_STORE_URL": STORE_URLS["batch"],
        "AIRFLOW__API__BASE_URL": f"http://airflow:{PORTS['airflow']}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://airflow:{PORTS['airflow']}/execution/",
        "LAMBDA_SPARK_DRIVER_HOST": "airflow",
    },
    "serving": {"LAMBDA_API_HOST": "0.0.0.0", "LAMBDA_SPEED_STORE_URL": STORE_URLS["serving"]},
    "spark-master": {"SPARK_MASTER_WEBUI_PORT": "8080", "SPARK_DAEMON_MEMORY": "512m"},
    "spark-worker-1": {**SPARK_WORKER_ENV, "SPARK_DAEMON_MEMORY": "256m"},
    "spark-worker-2": {**SPARK_WORKER_ENV, "SPARK_DAEMON_MEMORY": "256m"},
}

# The object store's keys, which every client presents (compose reads the same variables).
S3_ACCESS_KEY = ("LAMBDA_S3_ACCESS_KEY", "lambda")
S3_SECRET_KEY = ("LAMBDA_S3_SECRET_KEY", "lambda-secret")

# What each platform service runs (the same argv in compose and on a cluster host).
DEMO_PRODUCER = ["lambda-produce", "--rate", "20", "--accounts", "2000", "--duplicates", "0.01"]
DEMO_PRODUCER += ["--late", "0.01", "--malformed", "0.005", "--quiet"]
COMMANDS: dict[str, list[str]] = {
    "spark-master": [
        "spark-class",
        "org.apache.spark.deploy.master.Master",
        "--host",
        "spark-master",
    ],
    "spark-worker-1": [
        "spark-class",
        "org.apache.spark.deploy.worker.Worker",
        "spark://spark-master:7077",
    ],
    "spark-worker-2": [
        "spark-class",
        "org.apache.spark.deploy.worker.Worker",
        "spark://spark-master:7077",
    ],
    "speed-1": ["lambda-speed", "--instance", "1"],
    "speed-2": ["lambda-speed", "--instance", "2"],
    "airflow-apiserver": ["lambda-platform", "airflow", "api-server"],
    "airflow-scheduler": ["lambda-platform", "airflow", "scheduler"],
    "airflow-dag-processor": ["lambda-platform", "airflow", "dag-processor"],
    "airflow-triggerer": ["lambda-platform", "airflow", "triggerer"],
    "airflow-upkeep": ["lambda-platform", "airflow-upkeep"],
    "serving": ["lambda-serve"],
    "producer": DEMO_PRODUCER,
}


@dataclass(frozen=True)
class Network:
    """Where the hosts live: namespaces ``<prefix><host>`` on bridge ``<prefix>br`` in
    ``subnet`` (the bridge takes its first address, the hosts the next ones in order)."""

    prefix: str = "lambda-"
    subnet: str = "10.213.77.0/24"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    def namespace(self, host: str) -> str:
        return f"{self.prefix}{host}"

    def gateway(self) -> str:
        return str(ipaddress.ip_network(self.subnet)[1])

    def prefix_len(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def address(self, host: str) -> str:
        index = [h.name for h in HOSTS].index(host)
        return str(ipaddress.ip_network(self.subnet)[10 + index])

    def veth(self, host: str) -> str:
        """The bridge-side end of a host's link (interface names are at most 15 bytes)."""
        index = [h.name for h in HOSTS].index(host)
        return f"{self.prefix[:8]}v{index}"

    def hosts_file(self) -> str:
        """``/etc/hosts`` as every host sees it: every host's name and address."""
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        lines += [f"{self.address(h.name)} {h.name}" for h in HOSTS]
        return "\n".join(lines) + "\n"
