"""docker-compose.yml stays built on the same code and settings as local mode."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from infra.cluster.topology import (
    AIRFLOW_ENV,
    CLUSTER_ENV,
    COMMANDS,
    DB_ADMIN_URL,
    HOSTS,
    KAFKA_HOSTS,
    STORE_ROLE_OF_HOST,
    STORE_URLS,
)
from infra.db_roles import DbInitSettings
from lambda_contracts.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
APP_SERVICES = {n: s for n, s in COMPOSE["services"].items() if s.get("build") == "."}


def test_app_services_run_the_projects_own_commands() -> None:
    assert {"speed-1", "speed-2", "serving", "airflow-apiserver", "producer"} <= set(APP_SERVICES)
    for name, service in APP_SERVICES.items():
        program = service["command"][0]
        assert program in SCRIPTS or program in ("python", "spark-class"), name


def test_lambda_variables_are_real_settings() -> None:
    fields = {f"LAMBDA_{name.upper()}" for name in Settings.model_fields}
    db_init = {f"LAMBDA_DB_{name.upper()}" for name in DbInitSettings.model_fields}
    for name, service in APP_SERVICES.items():
        known = fields | db_init if name == "db-init" else fields
        unknown = {k for k in service.get("environment", {}) if k.startswith("LAMBDA_")} - known
        assert not unknown, f"{name}: {unknown}"


def resolved(value: str) -> str:
    """A value as compose gives it with nothing set in the environment: ``${X:-d}`` is d."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_each_service_logs_in_to_postgres_as_its_own_role() -> None:
    """As on the cluster's hosts: the speed processes, serving and Airflow (the batch tasks)
    each with their role's URL; the administrator's only in db-init, which makes the roles."""
    services = COMPOSE["services"]
    host_of = {service: host.name for host in HOSTS for service in host.services}
    for name, service in APP_SERVICES.items():
        env = {k: resolved(str(v)) for k, v in service.get("environment", {}).items()}
        role = STORE_ROLE_OF_HOST.get(host_of.get(name, ""))
        if role is not None:
            assert env["LAMBDA_SPEED_STORE_URL"] == STORE_URLS[role], name
        elif name != "airflow-init":
            assert "LAMBDA_SPEED_STORE_URL" not in env, name
        if name != "db-init":
            assert not any("postgres:" in v.split("@")[0] for v in env.values()), name
    db_init = {k: resolved(v) for k, v in services["db-init"]["environment"].items()}
    assert db_init["LAMBDA_DB_ADMIN_URL"] == DB_ADMIN_URL
    assert {r: db_init[f"LAMBDA_DB_{r.upper()}_URL"] for r in STORE_URLS} == STORE_URLS
    assert db_init["LAMBDA_DB_AIRFLOW_URL"] == AIRFLOW_ENV["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert services["db-init"]["command"] == ["lambda-platform", "db-init"]
    assert services["postgres"]["environment"]["POSTGRES_USER"] == "postgres"
    for name, service in APP_SERVICES.items():  # who logs in starts once the roles exist
        env = service.get("environment", {})
        if "LAMBDA_SPEED_STORE_URL" in env or "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in env:
            condition = service.get("depends_on", {}).get("db-init", {}).get("condition")
            assert condition == "service_completed_successfully", name


def test_kafka_is_three_official_brokers_in_one_kraft_quorum() -> None:
    brokers = [COMPOSE["services"][h] for h in KAFKA_HOSTS]
    voters = ",".join(f"{i}@{h}:9093" for i, h in enumerate(KAFKA_HOSTS, start=1))
    for node_id, (host, kafka) in enumerate(zip(KAFKA_HOSTS, brokers, strict=True), start=1):
        env = kafka["environment"]
        assert kafka["image"].startswith("apache/kafka:4.")
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_NODE_ID"] == node_id and env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        assert f"PLAINTEXT://{host}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
        # The lecture's durability: 3 replicas, 2 in sync to acknowledge, no unclean election.
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == (3, 2)
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    assert len({k["environment"]["CLUSTER_ID"] for k in brokers}) == 1
    assert all(
        p.startswith("127.0.0.1:") for s in COMPOSE["services"].values() for p in s.get("ports", [])
    )


def test_compose_mirrors_the_cluster_topology() -> None:
    """The same services, commands and LAMBDA_* settings as ``make cluster-up``'s hosts."""
    long_running = {
        n
        for n, s in COMPOSE["services"].items()
        if s.get("restart") != "no" and "monitoring" not in s.get("profiles", [])
    }
    on_hosts = {service for host in HOSTS for service in host.services}
    assert long_running == on_hosts
    for name, argv in COMMANDS.items():
        assert APP_SERVICES[name]["command"] == argv, name
    shared = COMPOSE["x-app"]["environment"]
    assert {k: v for k, v in shared.items() if k in CLUSTER_ENV} == CLUSTER_ENV
    # Airflow on PostgreSQL with the same URLs, sync and async, on both; and, as on the
    # cluster, only Airflow's parts know its database.
    for name, service in APP_SERVICES.items():
        env = service.get("environment", shared)
        if name.startswith("airflow-"):
            ours = {k: resolved(v) for k, v in env.items() if k in AIRFLOW_ENV}
            assert ours == AIRFLOW_ENV, name
        else:
            assert not [k for k in env if k.startswith("AIRFLOW__")], name
    # Every process finds the object store's keys where the AWS clients look.
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(shared)


def test_airflow_async_database_url_uses_an_installed_driver() -> None:
    """Airflow derives postgresql+asyncpg from the sync URL unless told; asyncpg is not
    installed, so the async URL must be explicit and its driver importable."""
    from sqlalchemy.ext.asyncio import create_async_engine

    url = COMPOSE["x-airflow-env"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]
    assert url.startswith("postgresql+psycopg_async://")
    create_async_engine(url)  # resolves the dialect and imports the driver, connects to nothing


def test_kafka_keeps_its_log_on_the_volume() -> None:
    for host in KAFKA_HOSTS:
        kafka = COMPOSE["services"][host]
        log_dir = kafka["environment"]["KAFKA_LOG_DIRS"]
        assert any(v.split(":")[1] == log_dir for v in kafka["volumes"]), host


def test_cluster_driver_is_reachable_by_the_workers() -> None:
    from batch_layer.submit import spark_conf, spark_env

    scheduler = COMPOSE["services"]["airflow-scheduler"]["environment"]
    settings = Settings(
        spark_master=COMPOSE["x-app"]["environment"]["LAMBDA_SPARK_MASTER"],
        spark_driver_host=scheduler["LAMBDA_SPARK_DRIVER_HOST"],
    )
    assert "SPARK_LOCAL_IP" not in spark_env(settings)
    assert spark_conf(settings)["spark.driver.host"] == "airflow-scheduler"
    assert spark_env(Settings())["SPARK_LOCAL_IP"] == "127.0.0.1"  # local mode stays on loopback


def test_docker_build_context_leaves_out_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "data", ".cache", ".git"} <= set(ignored)


def test_s3a_jars_are_read_in_place_on_every_spark_host(tmp_path: Path) -> None:
    """The s3a jars go on the class path of the driver and the executors from the directory
    every Spark host has (the image's, which compose names): never shipped per application,
    which copied 640 MB into a temporary directory at every run."""
    from batch_layer.inputs import s3a_conf

    for name in ("hadoop-aws-3.5.0.jar", "bundle-2.35.4.jar", "analyticsaccelerator-s3-1.3.1.jar"):
        (tmp_path / name).touch()
    conf = s3a_conf(Settings(storage_url="s3://lambda/master", spark_s3a_jars=tmp_path))
    assert "spark.jars" not in conf
    for role in ("driver", "executor"):
        jars = conf[f"spark.{role}.extraClassPath"].split(":")
        assert sorted(Path(j).name for j in jars) == sorted(p.name for p in tmp_path.iterdir())
    image_dir = COMPOSE["x-app"]["environment"]["LAMBDA_SPARK_S3A_JARS"]
    workers = [s for n, s in COMPOSE["services"].items() if n.startswith("spark-worker")]
    assert workers and all(w["image"] == COMPOSE["x-app"]["image"] for w in workers)
    assert f"COPY --from=s3a-jars {image_dir} {image_dir}" in (ROOT / "Dockerfile").read_text()


def test_every_container_log_is_bounded() -> None:
    """Docker's json-file driver keeps a container's log whole unless told: a week unattended
    would fill the disk. Each service keeps a bounded number of bounded files."""
    for name, service in COMPOSE["services"].items():
        logging = service.get("logging", {})
        options = logging.get("options", {})
        assert logging.get("driver") == "json-file", name
        assert options.get("max-size") and int(options.get("max-file", 0)) >= 1, name


def test_long_running_services_say_when_they_are_ready() -> None:
    """depends_on conditions and operators rely on healthchecks: every long-running service
    of the platform has one, and PostgreSQL's checks over TCP (the image's first-start server
    listens on the Unix socket only, where pg_isready would call it ready)."""
    services = COMPOSE["services"]
    for name in ("serving", "spark-master", "speed-1", "speed-2", "postgres", "kafka-1", "s3"):
        assert "healthcheck" in services[name], name
    # s3-init makes the bucket: only once the store answers, not once its process started.
    assert services["s3-init"]["depends_on"]["s3"]["condition"] == "service_healthy"
    assert "--health" in services["s3"]["command"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"):
        assert "healthcheck" in services[name], name
    assert "-h 127.0.0.1" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["serving"]["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully"
    )


def test_topics_come_from_the_topics_job_only() -> None:
    """A broker that auto-creates would make ``transactions`` with one partition and
    CreateTime when anything asks about it before the topics job ran."""
    for host in KAFKA_HOSTS:
        assert (
            COMPOSE["services"][host]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        )
    for name, service in APP_SERVICES.items():
        waits = service.get("depends_on", {})
        if name.startswith(("speed-", "serving", "producer")):
            assert waits["topics"]["condition"] == "service_completed_successfully", name


def test_the_brokers_healthcheck_is_light() -> None:
    """The check starts a JVM: not with the brokers' 512 MB heap, and not every 10 s."""
    check = COMPOSE["x-kafka"]["healthcheck"]
    assert "-Xmx64m" in " ".join(check["test"])
    assert int(check["interval"].rstrip("s")) >= 30
    assert "start_interval" in check and "start_period" in check


def test_the_image_runs_as_a_user_with_its_dependencies_in_their_own_layer() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    first_source = next(
        i for i, line in enumerate(final) if line.startswith("COPY lambda_contracts")
    )
    installs = [i for i, line in enumerate(final) if "-r /tmp/dependencies.txt" in line]
    assert installs and installs[0] < first_source  # a code edit keeps the dependency layer
    entrypoint = next(line for line in final if line.startswith("ENTRYPOINT"))
    assert '"-g"' in entrypoint and "infra/compose/run-service" in entrypoint


def test_the_demo_producer_is_a_profile_on_by_default() -> None:
    assert COMPOSE["services"]["producer"]["profiles"] == ["demo"]
    env = dict(
        line.split("=", 1)
        for line in (ROOT / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["COMPOSE_PROFILES"] == "demo"
