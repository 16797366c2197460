"""The cluster's services: each runs on its host (inside the host's network namespace) with
the cluster's ``LAMBDA_*`` settings, and each has a health check that the machine's own
namespace can run (it reaches every host's address over the bridge).

The same Supervisor as local mode runs them (one process group, pid file and log each), so
``cluster up`` starts only what is down and ``cluster down`` stops process groups. Each host
keeps its own state under ``<data dir>/cluster/<host>``; the master dataset and the batch
views live on the ``s3`` host, the speed store and Airflow's metadata on ``postgres``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import URL, make_url

from infra.cluster import netns, postgres
from infra.cluster.kafka_nodes import kafka_node_properties
from infra.cluster.kafka_security import ADMIN_USER, HOST_USERS, ClusterKafkaSecurity
from infra.cluster.topology import (
    AIRFLOW_ENV,
    BUCKET,
    CLUSTER_ENV,
    COMMANDS,
    DB_ADMIN_URL,
    HOST_ENV,
    HOSTS,
    KAFKA_HOSTS,
    PORTS,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    STORE_URLS,
    Network,
)
from infra.db_roles import DbLogins, provision
from infra.kafka_broker import broker_command, new_cluster_id
from infra.kafka_secured import write_grants
from infra.monitoring import RULES, cluster_config, prometheus_service
from infra.s3_server import S3Server, build_versitygw
from infra.services import port_open
from infra.supervisor import Service, ServiceError, Supervisor
from lambda_contracts.settings import Settings

VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Step:
    """A one-shot command run on a host during ``up`` (compose's init containers)."""

    name: str
    host: str
    argv: list[str]
    timeout_s: float = 300.0
    # Run only when one of these services is down (an ``up`` that only restarts a broker
    # need not migrate Airflow's database again).
    needed_by: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # beside the host's own


# Where a service outside the hosts runs (Prometheus): this machine's own namespace.
MACHINE = "machine"

# ``up`` brings the cluster up stage by stage: every service of a stage is spawned before any
# is waited for (a controller quorum only answers once its voters run).
Stage = list[Service] | Step


@dataclass(frozen=True)
class Cluster:
    root: Path  # <data dir>/cluster: a directory per host, plus run/ and logs/
    net: Network = field(default_factory=Network)
    access_key: str = S3_ACCESS_KEY[1]
    secret_key: str = S3_SECRET_KEY[1]
    kafka_heap: str = "512m"
    # Prometheus on this machine, outside the hosts (LAMBDA_PROMETHEUS_ENABLED=1).
    monitoring: bool = False
    # TLS and SASL between the hosts' Kafka clients and brokers (LAMBDA_CLUSTER_KAFKA_SECURITY).
    kafka_security: bool = False

    @classmethod
    def of(
        cls,
        data_dir: Path,
        net: Network | None = None,
        monitoring: bool = False,
        kafka_security: bool = False,
    ) -> Cluster:
        return cls(
            root=data_dir / "cluster",
            net=net or Network(),
            access_key=os.environ.get(S3_ACCESS_KEY[0], S3_ACCESS_KEY[1]),
            secret_key=os.environ.get(S3_SECRET_KEY[0], S3_SECRET_KEY[1]),
            monitoring=monitoring,
            kafka_security=kafka_security,
        )

    @property
    def security(self) -> ClusterKafkaSecurity | None:
        """The Kafka users, certificates and ACLs, when the cluster runs with them."""
        return ClusterKafkaSecurity(self.root / "kafka-security") if self.kafka_security else None

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.root / "run", self.root / "logs")

    def host_dir(self, host: str) -> Path:
        return self.root / host

    def address(self, host: str) -> str:
        return "127.0.0.1" if host == MACHINE else self.net.address(host)

    def env(self, host: str) -> dict[str, str]:
        """What every process of ``host`` runs with: the cluster's settings, the host's own
        data directory and extras, the store's keys; the venv first on PATH."""
        return {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
            **CLUSTER_ENV,
            "LAMBDA_DATA_DIR": str(self.host_dir(host)),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "SPARK_LOCAL_IP": self.address(host),
            "SPARK_LOCAL_HOSTNAME": host,
            **HOST_ENV.get(host, {}),
            **self.kafka_login(HOST_USERS.get(host)),
        }

    def kafka_login(self, user: str | None) -> dict[str, str]:
        """``user``'s ``LAMBDA_KAFKA_*`` login on a secured cluster (nothing otherwise)."""
        if self.security is None or user is None:
            return {}
        return self.security.client_env(user)

    def settings(self, host: str) -> Settings:
        """The platform settings a process of ``host`` reads from its environment."""
        env = self.env(host)
        ours = {k[len("LAMBDA_") :].lower(): v for k, v in env.items() if k.startswith("LAMBDA_")}
        return Settings(**{k: v for k, v in ours.items() if k in Settings.model_fields})

    def on(self, host: str, argv: list[str]) -> list[str]:
        return netns.exec_argv(self.net, host, argv)

    def reached(self, url: str) -> URL:
        """A URL of the postgres host as the machine reaches it (by the host's address)."""
        return make_url(url).set(host=self.address("postgres"))

    def store_url(self, role: str = "speed") -> URL:
        """The speed store's URL for a service role (infra/db_roles.py), from the machine."""
        return self.reached(STORE_URLS[role])

    def db_logins(self) -> DbLogins:
        """The administrator's and every role's logins, from the machine."""
        airflow = AIRFLOW_ENV["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        return DbLogins(
            self.reached(DB_ADMIN_URL),
            {role: self.store_url(role) for role in STORE_URLS},
            self.reached(airflow),
        )

    # --- the services -------------------------------------------------------------------

    def service(
        self, name: str, command: Callable[[], list[str]], host: str, **kw: object
    ) -> Service:
        return Service(name, command, env=self.env(host), **kw)  # type: ignore[arg-type]

    def postgres(self) -> Service:
        host = "postgres"
        directory = self.host_dir(host)

        def command() -> list[str]:
            data = postgres.init_data_dir(directory, self.db_logins().admin, self.net.subnet)
            port = PORTS["postgres"]
            argv = postgres.server_command(data, self.address(host), port, directory / "socket")
            return self.on(host, argv)

        logins = self.db_logins()
        return self.service(
            host,
            command,
            host,
            healthy=lambda: postgres.answering(logins.admin),
            after_start=lambda: provision(logins),
            start_timeout_s=60,
            stop_timeout_s=30,
        )

    def s3(self) -> Service:
        host = "s3"
        server = S3Server(
            root=self.host_dir(host) / "root",
            host=self.address(host),
            port=PORTS["s3"],
            access_key=self.access_key,
            secret_key=self.secret_key,
            supervisor=self.supervisor,
            binary=Path("versitygw"),  # built when the service starts
        )

        def command() -> list[str]:
            server.root.mkdir(parents=True, exist_ok=True)
            return self.on(host, replace(server, binary=build_versitygw()).command())

        return self.service(
            host,
            command,
            host,
            healthy=server.answering,
            after_start=lambda: server.create_bucket(BUCKET),
            start_timeout_s=30,
            stop_timeout_s=10,
        )

    def kafka_cluster_id(self) -> str:
        """The KRaft cluster id all three nodes are formatted with, made once."""
        path = self.root / "kafka-cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    def kafka_node(self, host: str) -> dict[str, str]:
        """``host``'s keys of ``server.properties`` (:func:`kafka_node_properties`, and
        :class:`ClusterKafkaSecurity`'s on a secured cluster)."""
        node = kafka_node_properties(host, self.address)
        if self.security is not None:
            node |= self.security.node_properties(host, self.address)
        return node

    def kafka(self, host: str) -> Service:
        settings = Settings(data_dir=self.host_dir(host), kafka_heap=self.kafka_heap)

        def command() -> list[str]:
            node = self.kafka_node(host)
            scram = self.security.scram_arguments() if self.security is not None else ()
            return self.on(host, broker_command(settings, node, self.kafka_cluster_id(), scram))

        addr = self.address(host)
        return self.service(
            host,
            command,
            host,
            healthy=lambda: port_open(addr, PORTS["kafka"]),
            start_timeout_s=120,
            stop_timeout_s=30,
        )

    def spark_master(self) -> Service:
        url = f"http://{self.address('spark-master')}:{HOST_ENV['spark-master']['SPARK_MASTER_WEBUI_PORT']}/json/"

        def healthy() -> bool:
            try:
                return httpx.get(url, timeout=2).json().get("status") == "ALIVE"
            except (httpx.HTTPError, ValueError):
                return False

        return self._platform("spark-master", "spark-master", healthy, start_timeout_s=90)

    def spark_worker(self, host: str) -> Service:
        master = f"http://{self.address('spark-master')}:{HOST_ENV['spark-master']['SPARK_MASTER_WEBUI_PORT']}/json/"

        def healthy() -> bool:
            try:
                workers = httpx.get(master, timeout=2).json().get("workers", [])
            except (httpx.HTTPError, ValueError):
                return False
            return any(w.get("host") == host and w.get("state") == "ALIVE" for w in workers)

        return self._platform(host, host, healthy, start_timeout_s=90)

    def airflow(self) -> list[Service]:
        api = f"http://{self.address('airflow')}:{PORTS['airflow']}/api/v2/monitor/health"

        def healthy() -> bool:
            try:
                return httpx.get(api, timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        names = (
            "airflow-scheduler",
            "airflow-dag-processor",
            "airflow-triggerer",
            "airflow-upkeep",
        )
        return [
            self._platform("airflow-apiserver", "airflow", healthy, start_timeout_s=240),
            *(self._platform(n, "airflow", lambda: True) for n in names),
        ]

    def speed_report(self, host: str) -> dict[str, Any] | None:
        """A speed host's own health report (``/readyz``: status, stalled seconds, lag, its
        partitions), or None if it does not answer."""
        port = self.settings(host).speed_metrics_port + int(host.rsplit("-", 1)[1])
        try:
            report = httpx.get(f"http://{self.address(host)}:{port}/readyz", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return None
        return report if isinstance(report, dict) else None

    def speed(self, host: str) -> Service:
        def healthy() -> bool:
            return (self.speed_report(host) or {}).get("status") == "ok"

        return self._platform(host, host, healthy, start_timeout_s=120)

    def serving(self) -> Service:
        url = f"http://{self.address('serving')}:{PORTS['serving']}/healthz"
        return self._platform("serving", "serving", lambda: _http_ok(url), start_timeout_s=90)

    def producer(self) -> Service:
        return self._platform("producer", "producer", lambda: True)

    def prometheus(self) -> Service:
        """Prometheus on this machine's own namespace, which reaches every host at its address
        on the bridge: the configuration of infra/prometheus/prometheus-cluster.yml, with the
        alert rules by their path here, its data under the cluster's directory."""
        settings = self.settings("serving")
        config = cluster_config(settings, self.net, rules=str(RULES))
        return prometheus_service(settings, config, self.root / "prometheus")

    def _platform(self, name: str, host: str, healthy: Callable[[], bool], **kw: float) -> Service:
        """A platform service: its command is the one compose runs (``COMMANDS``)."""
        command = lambda: self.on(host, COMMANDS[name])  # noqa: E731
        return self.service(name, command, host, healthy=healthy, stop_timeout_s=30, **kw)

    def stages(self, demo: bool = True) -> list[Stage]:
        """Every service and init step, in the order ``up`` brings them up (the demo
        producer last, unless ``demo`` is off)."""
        stages: list[Stage] = [
            [self.postgres(), self.s3()],
            [self.kafka(h) for h in KAFKA_HOSTS],
            Step(
                "topics",
                "producer",
                [sys.executable, "-m", "infra.topics"],
                timeout_s=180,
                needed_by=("speed-1", "speed-2", "serving"),
                env=self.kafka_login(ADMIN_USER),
            ),
            *self.acl_steps(),
            [self.spark_master()],
            [self.spark_worker("spark-worker-1"), self.spark_worker("spark-worker-2")],
            Step(
                "airflow-init",
                "airflow",
                ["lambda-platform", "airflow", "db", "migrate"],
                needed_by=("airflow-apiserver",),
            ),
            self.airflow(),
            [self.speed("speed-1"), self.speed("speed-2")],
            [self.serving()],
        ]
        if self.monitoring:  # scrapes the services above: started after them
            stages.append([self.prometheus()])
        return [*stages, [self.producer()]] if demo else stages

    def acl_steps(self) -> list[Step]:
        """On a secured cluster: each host's user gets its ACLs (kafka-acls, as the admin)."""
        if self.security is None:
            return []
        security = self.security
        grants = write_grants(
            security.directory / "grants.json", security.grants(self.settings("producer"))
        )
        bootstrap = f"{KAFKA_HOSTS[0]}:{PORTS['kafka']}"
        admin = security.admin_properties()
        return [
            Step(
                "kafka-acls",
                "producer",
                [sys.executable, "-m", "infra.kafka_secured", str(grants), bootstrap, str(admin)],
                timeout_s=300,
                needed_by=("speed-1", "speed-2", "serving"),
            )
        ]

    def services(self) -> list[Service]:
        return [s for stage in self.stages() if isinstance(stage, list) for s in stage]

    def host_of(self, service: str) -> str:
        return next((h.name for h in HOSTS if service in h.services), MACHINE)

    def run_step(self, step: Step) -> str:
        """Run a one-shot step on its host; its output, or ServiceError with its output."""
        done = subprocess.run(
            self.on(step.host, step.argv),
            env={**os.environ, **self.env(step.host), **step.env},
            capture_output=True,
            text=True,
            timeout=step.timeout_s,
        )
        output = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            tail = "\n".join(output.splitlines()[-15:])
            raise ServiceError(f"{step.name} on {step.host} failed ({done.returncode}):\n{tail}")
        return output


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
