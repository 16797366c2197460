"""The Kubernetes chart (deploy/helm/lambda-platform) lints, renders manifests that the
Kubernetes schemas accept, and runs the same commands and settings as the cluster's hosts
(infra/cluster/topology.py), as tests/unit/test_compose.py checks for docker-compose.yml.

Offline: ``helm lint`` and ``helm template`` need no cluster, ``kubernetes-validate`` ships the
schemas. Helm is built by ``make helm`` (``make test`` depends on it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kafka import KafkaConsumer

from infra.cluster.topology import (
    AIRFLOW_ENV,
    CLUSTER_ENV,
    COMMANDS,
    HOST_ENV,
    STORE_ROLE_OF_HOST,
)
from lambda_contracts.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "lambda-platform"
# The chart's own CI values (every optional part on), besides the defaults.
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VALUE_SETS = [None, *CI_VALUES]
KUBERNETES_VERSION = "1.37.0"  # the newest the pinned kubernetes-validate ships
INSTALL_HELM = "install helm: go install helm.sh/helm/v4/cmd/helm@v4.3.2"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

# kafka-python's connection options, set by the chart as LAMBDA_KAFKA_<NAME> before the
# platform's Settings read them (issue 29): allowed besides the real settings.
KAFKA_SECURITY_ENV = {
    "LAMBDA_KAFKA_SECURITY_PROTOCOL",
    "LAMBDA_KAFKA_SASL_MECHANISM",
    "LAMBDA_KAFKA_SASL_PLAIN_USERNAME",
    "LAMBDA_KAFKA_SASL_PLAIN_PASSWORD",
    "LAMBDA_KAFKA_SSL_CAFILE",
}
# What only a Secret may hold.
SECRET_ENV = {
    "LAMBDA_SPEED_STORE_URL",
    "LAMBDA_API_TOKEN",
    "LAMBDA_KAFKA_SASL_PLAIN_USERNAME",
    "LAMBDA_KAFKA_SASL_PLAIN_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
    "AIRFLOW__API_AUTH__JWT_SECRET",
}
AIRFLOW_COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor")
AIRFLOW_COMPONENTS += ("airflow-triggerer",)
# The cluster host each workload stands for.
HOST_OF_WORKLOAD = {"speed": "speed-1", "serving": "serving", "producer": "producer"}
HOST_OF_WORKLOAD |= {name: "airflow" for name in AIRFLOW_COMPONENTS}
# The Jobs and the compose services that run the same command once.
JOBS = {"storage-init": "s3-init", "topics": "topics", "airflow-db-migrate": "airflow-init"}


def helm() -> str:
    """The helm that ``make helm`` builds (Go's bin directory), else one on PATH."""
    gobin = os.environ.get("GOBIN") or Path(os.environ.get("GOPATH") or Path.home() / "go") / "bin"
    for candidate in (Path(gobin) / "helm", shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(INSTALL_HELM, pytrace=False)


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120)


@cache
def render(values: Path | None = None, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "lambda", str(CHART), "--namespace", "lambda"]
    args += ["-f", str(values)] if values else []
    args += [a for s in sets for a in ("--set", s)]
    done = run_helm(*args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployments, StatefulSets and Jobs by their component label."""
    kinds = ("Deployment", "StatefulSet", "Job")
    return {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in docs
        if d["kind"] in kinds
    }


def containers(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in workload["spec"]["template"]["spec"]["containers"]}


def container(workload: dict[str, Any]) -> dict[str, Any]:
    """The workload's own container (the first; only the scheduler's pod has a second)."""
    return workload["spec"]["template"]["spec"]["containers"][0]


def env_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(workload)["env"]}


def literal_env(workload: dict[str, Any]) -> dict[str, str]:
    return {k: e["value"] for k, e in env_of(workload).items() if "value" in e}


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda v: v.name if v else "defaults")
def test_chart_lints(values: Path | None) -> None:
    done = run_helm("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda v: v.name if v else "defaults")
def test_rendered_manifests_validate_against_the_kubernetes_schemas(values: Path | None) -> None:
    docs = render(values)
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message}")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("StatefulSet") == 1 and kinds.count("Job") == 3
    assert kinds.count("Deployment") == 5 + (values is not None)  # the producer is optional


def test_chart_mirrors_the_cluster_topology() -> None:
    """The same commands and LAMBDA_* settings as ``make cluster-up``'s hosts, on the defaults
    (which name those hosts); secrets come from Secrets instead."""
    by_component = workloads(render(None, "producer.enabled=true"))
    # The speed processes: pod N of the StatefulSet runs speed-N's command.
    speed = by_component["speed"]
    start, replicas = speed["spec"]["ordinals"]["start"], speed["spec"]["replicas"]
    pod_index = env_of(speed)["SPEED_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert pod_index == "metadata.labels['apps.kubernetes.io/pod-index']"
    argv = container(speed)["args"]
    instances = {f"speed-{n}" for n in range(start, start + replicas)}
    assert instances == {name for name in COMMANDS if name.startswith("speed-")}
    for name in instances:
        instance = name.removeprefix("speed-")
        assert [a.replace("$(SPEED_INSTANCE)", instance) for a in argv] == COMMANDS[name]
    # Every other platform service: the topology's argv (Spark is external).
    for name in ("serving", "producer", *AIRFLOW_COMPONENTS):
        assert container(by_component[name])["args"] == COMMANDS[name], name
    # Airflow's upkeep beside the scheduler, whose pod's volume holds the task logs.
    scheduler_pod = containers(by_component["airflow-scheduler"])
    assert set(scheduler_pod) == {"airflow-scheduler", "airflow-upkeep"}
    upkeep = scheduler_pod["airflow-upkeep"]
    assert upkeep["args"] == COMMANDS["airflow-upkeep"]
    assert {"name": "data", "mountPath": "/data"} in upkeep["volumeMounts"]
    upkeep_env = {e["name"] for e in upkeep["env"]}
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in upkeep_env
    assert not any("JWT" in name for name in upkeep_env)
    # The one-off Jobs: what compose runs before the layers.
    for job, service in JOBS.items():
        assert by_component[job]["kind"] == "Job"
        assert container(by_component[job])["args"] == COMPOSE["services"][service]["command"]

    for name, workload in by_component.items():
        env, literal = env_of(workload), literal_env(workload)
        from_secret = {k for k, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})}
        assert set(CLUSTER_ENV) <= set(env), name
        assert {k: literal[k] for k in CLUSTER_ENV if k in literal} == {
            k: v for k, v in CLUSTER_ENV.items() if k not in from_secret
        }, name
        # Each service logs in to the speed store as its cluster host's role, or not at all.
        host = HOST_OF_WORKLOAD.get(name)
        role = STORE_ROLE_OF_HOST.get(host or "")
        if role is None:
            assert "LAMBDA_SPEED_STORE_URL" not in env, name
        else:
            assert "LAMBDA_SPEED_STORE_URL" in from_secret, name
            key = env["LAMBDA_SPEED_STORE_URL"]["valueFrom"]["secretKeyRef"]["key"]
            assert key == f"{role}-store-url", name
        airflow = name in AIRFLOW_COMPONENTS or name == "airflow-db-migrate"
        if airflow:
            # Airflow on PostgreSQL, sync and async URLs from the Secret; the host's settings.
            assert {k: literal[k] for k in AIRFLOW_ENV if k in literal} == {
                k: v for k, v in AIRFLOW_ENV.items() if k not in from_secret
            }
            assert {k for k in AIRFLOW_ENV if k.startswith("AIRFLOW__DATABASE__")} <= from_secret
            assert set(HOST_ENV["airflow"]) - {"LAMBDA_SPEED_STORE_URL"} <= set(env), name
            api = "http://lambda-lambda-platform-airflow-apiserver:8080"
            assert literal["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{api}/execution/"
            # spark-submit's driver is reached at the scheduler pod's address.
            assert literal["LAMBDA_SPARK_DRIVER_HOST"] == "$(POD_IP)"
            assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        else:
            assert not any(k.startswith("AIRFLOW__") for k in env), name
    serving_host = {k: v for k, v in HOST_ENV["serving"].items() if k not in SECRET_ENV}
    assert serving_host.items() <= literal_env(by_component["serving"]).items()


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda v: v.name if v else "defaults")
def test_lambda_variables_are_real_settings(values: Path | None) -> None:
    fields = {f"LAMBDA_{name.upper()}" for name in Settings.model_fields}
    for name, workload in workloads(render(values)).items():
        unknown = {k for k in env_of(workload) if k.startswith("LAMBDA_")} - fields
        assert unknown <= KAFKA_SECURITY_ENV, f"{name}: {unknown - KAFKA_SECURITY_ENV}"
    # Those are kafka-python's own option names.
    options = {n.removeprefix("LAMBDA_KAFKA_").lower() for n in KAFKA_SECURITY_ENV}
    assert options <= set(KafkaConsumer.DEFAULT_CONFIG)


def test_kafka_security_block_reaches_every_process() -> None:
    (secure,) = [v for v in CI_VALUES if v.name == "secure-values.yaml"]
    for name, workload in workloads(render(secure)).items():
        env, mounts = env_of(workload), container(workload)["volumeMounts"]
        assert env["LAMBDA_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL", name
        assert env["LAMBDA_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512", name
        ca = env["LAMBDA_KAFKA_SSL_CAFILE"]["value"]
        assert any(ca.startswith(m["mountPath"] + "/") for m in mounts), name
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert volumes["kafka-ca"]["configMap"]["name"] == "kafka-ca", name


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda v: v.name if v else "defaults")
def test_secrets_come_from_existing_secrets(values: Path | None) -> None:
    docs = render(values)
    assert not [d for d in docs if d["kind"] == "Secret"]  # the operator's, never the chart's
    for name, workload in workloads(docs).items():
        for key, entry in env_of(workload).items():
            if key in SECRET_ENV:
                assert "secretKeyRef" in entry.get("valueFrom", {}), f"{name}: {key}"
            else:
                assert "secretKeyRef" not in entry.get("valueFrom", {}), f"{name}: {key}"
    # No default credential of the local modes in the rendered manifests.
    text = yaml.safe_dump_all(docs)
    assert "lambda-secret" not in text and "lambda:lambda@" not in text


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda v: v.name if v else "defaults")
def test_pods_run_as_non_root_with_limits_and_probes(values: Path | None) -> None:
    for name, workload in workloads(render(values)).items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        for box in containers(workload).values():
            assert box["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert box["securityContext"]["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(box["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(box["resources"]["limits"]), name
            # The image's entrypoint (tini, which reaps Airflow's and Spark's children) stays.
            assert "command" not in box and box["args"], name
        box = container(workload)
        if workload["kind"] != "Job" and name != "producer":  # the producer serves nothing
            assert "livenessProbe" in box, name
    by_component = workloads(render(values))
    serving = container(by_component["serving"])
    assert serving["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert serving["livenessProbe"]["httpGet"]["path"] == "/healthz"
    api = container(by_component["airflow-apiserver"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"]["path"] == "/api/v2/monitor/health"
    scheduler = container(by_component["airflow-scheduler"])["livenessProbe"]["exec"]["command"]
    assert scheduler[:2] == ["lambda-platform", "airflow"]
    assert scheduler[2:] == ["jobs", "check", "--job-type", "SchedulerJob", "--local"]
    speed = container(by_component["speed"])
    assert "/readyz" in speed["readinessProbe"]["exec"]["command"][-1]


def test_speed_probes_read_the_instances_own_port() -> None:
    """The speed pods' exec probes against a real health server on metrics port + instance:
    ready only while healthy; alive while it answers, a halted partition included (a restart
    would only halt again)."""
    from speed_layer.health import Health, serve
    from speed_layer.metrics import SpeedMetrics

    speed = container(workloads(render(None))["speed"])
    ready, alive = (speed[p]["exec"]["command"] for p in ("readinessProbe", "livenessProbe"))
    health = Health(unhealthy_after_s=30.0)
    port = serve(health, SpeedMetrics(), 0)
    env = {**os.environ, "LAMBDA_SPEED_METRICS_PORT": str(port - 2), "SPEED_INSTANCE": "2"}

    def passes(command: list[str]) -> bool:
        argv = [sys.executable, *command[1:]] if command[0] == "python" else command
        return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode == 0

    assert passes(ready) and passes(alive)
    health.halt(0, "offsets ahead of the log")
    assert not passes(ready) and passes(alive)
    env["SPEED_INSTANCE"] = "3"  # nothing listens there
    assert not passes(alive)


def test_prometheus_of_the_release_scrapes_every_pod_with_the_platforms_rules(
    tmp_path: Path,
) -> None:
    """``prometheus.enabled``: the configuration promtool accepts, the rules of
    infra/prometheus/alerts.yml, each speed pod on its own port, serving pods by the API."""
    assert "Prometheus" not in {d["kind"] for d in render()}  # off by default
    assert not [d for d in render() if "prometheus" in d["metadata"]["name"]]
    docs = render(None, "prometheus.enabled=true")
    mine = [
        d for d in docs if "prometheus" in d["metadata"]["labels"]["app.kubernetes.io/component"]
    ]
    assert sorted(d["kind"] for d in mine) == ["ConfigMap", "Deployment", "Service", "Service"]
    for doc in mine:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    (config_map,) = [d for d in mine if d["kind"] == "ConfigMap"]
    rules = ROOT / "infra" / "prometheus" / "alerts.yml"
    assert config_map["data"]["alerts.yml"].strip() == rules.read_text().strip()
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    speed = [t for group in jobs["speed"]["static_configs"] for t in group["targets"]]
    assert speed == [
        "lambda-lambda-platform-speed-0.lambda-lambda-platform-speed.lambda.svc:9464",
        "lambda-lambda-platform-speed-1.lambda-lambda-platform-speed.lambda.svc:9465",
    ]
    (serving,) = jobs["serving"]["dns_sd_configs"]
    assert serving == {
        "names": ["lambda-lambda-platform-serving-pods.lambda.svc"], "type": "A", "port": 8000,
    }  # fmt: skip
    (pods,) = [d for d in mine if d["metadata"]["name"] == "lambda-lambda-platform-serving-pods"]
    assert pods["spec"]["clusterIP"] == "None"
    assert pods["spec"]["selector"]["app.kubernetes.io/component"] == "serving"
    # promtool reads the rules by the path the pod mounts them at: here, beside the copy.
    (tmp_path / "alerts.yml").write_text(config_map["data"]["alerts.yml"])
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("install promtool: apt-get install -y prometheus", pytrace=False)
    checked = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    pod = workloads(mine)["prometheus"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    box = container(workloads(mine)["prometheus"])
    assert box["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert {"cpu", "memory"} <= set(box["resources"]["limits"])


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda v: v.name if v else "defaults")
def test_only_the_api_server_and_the_scheduler_read_the_jwt_secret(values: Path | None) -> None:
    """Mounted from the Secret into those two pods and read by Airflow's _CMD form: in no
    environment (the scheduler's tasks and spark-submit inherit its environment)."""
    for name, workload in workloads(render(values)).items():
        env = env_of(workload)
        assert "AIRFLOW__API_AUTH__JWT_SECRET" not in env, name
        signs = name in ("airflow-apiserver", "airflow-scheduler")
        assert ("AIRFLOW__API_AUTH__JWT_SECRET_CMD" in env) is signs, name
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert ("airflow-jwt" in volumes) is signs, name
        if signs:
            mounts = {m["name"]: m["mountPath"] for m in container(workload)["volumeMounts"]}
            path = env["AIRFLOW__API_AUTH__JWT_SECRET_CMD"]["value"].split()[-1]
            assert path == mounts["airflow-jwt"] + "/jwt-secret", name
            assert volumes["airflow-jwt"]["secret"]["items"][0]["path"] == "jwt-secret"
