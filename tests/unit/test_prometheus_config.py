"""Monitoring: the scrape configurations, alert rules and dashboard of infra/prometheus and
infra/grafana are valid, tested, and read only metrics the code exports.

promtool (Debian's ``prometheus`` package, which ``.ci/run`` installs) checks the
configurations and rules and runs the rules' unit tests; without it these tests fail, they
are not skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cluster.services import Cluster
from infra.monitoring import (
    MISSING_BINARY,
    RULES,
    cluster_config,
    compose_config,
    local_config,
    prometheus_service,
)
from infra.services import platform_services
from lambda_contracts.settings import Settings
from serving.metrics import ServingMetrics
from speed_layer.metrics import SpeedMetrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
CONFIGS = {
    "prometheus.yml": local_config,
    "prometheus-compose.yml": compose_config,
    "prometheus-cluster.yml": cluster_config,
}
RULE_TESTS = PROMETHEUS / "tests" / "alerts_test.yml"
GRAFANA = ROOT / "infra" / "grafana" / "provisioning"
DASHBOARD = GRAFANA / "dashboards" / "lambda-platform.json"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _promtool(*args: str) -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("install promtool: apt-get install -y prometheus", pytrace=False)
    done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings' defaults, whatever the environment of the test run holds."""
    for name in list(os.environ):
        if name.startswith("LAMBDA_"):
            monkeypatch.delenv(name)
    return Settings()


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# --- promtool --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_promtool_accepts_each_scrape_configuration(name: str) -> None:
    _promtool("check", "config", str(PROMETHEUS / name))  # and the rule file it names


def test_promtool_accepts_the_rendered_local_configuration(
    defaults: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_config(defaults)))
    _promtool("check", "config", str(config))


def test_promtool_accepts_the_alert_rules() -> None:
    _promtool("check", "rules", str(RULES))


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    _promtool("test", "rules", str(RULE_TESTS))


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts - firing == set(), "alerts without a firing test"
    assert alerts - quiet == set(), "alerts without a test where they do not fire"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


# --- the rules and the dashboard read what the code exports -----------------------------------

PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}
PROMQL_WORDS |= {"group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()", expr)
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def exported_names() -> set[str]:
    """Every series name the speed layer's and serving's registries expose (a counter's
    ``_total``, a histogram's ``_bucket``, ``_count``, ``_sum``), and Prometheus's ``up``."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    names = {"up"}
    for registry in (SpeedMetrics().registry, ServingMetrics().registry):
        for family in registry.collect():
            names |= {family.name + s for s in suffixes.get(family.type, [""])}
    return names


def test_metric_names_are_read_from_expressions() -> None:
    expr = 'sum by (route) (rate(a_total{status=~"5.."}[5m])) / on (x) b > 4 * 5 and up == 0'
    assert metric_names(expr) == {"a_total", "b", "up"}
    expr = "histogram_quantile(0.99, max by (le) (c_bucket offset 5m)) > 1e3"
    assert metric_names(expr) == {"c_bucket"}


def test_alert_rules_read_only_exported_metrics() -> None:
    exported = exported_names()
    for rule in _rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']} reads {names - exported}, not exported"


def test_dashboard_reads_only_exported_metrics() -> None:
    exported = exported_names()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and names <= exported, f"{panel['title']}: {names - exported}"


def test_batch_horizon_threshold_is_k_schedules_of_the_batch_setting() -> None:
    (rule,) = [r for r in _rules() if r["alert"] == "BatchHorizonStale"]
    k, minutes = re.search(r">\s*(\d+)\s*\*\s*(\d+)\s*\*\s*60\b", rule["expr"]).groups()
    assert int(minutes) == Settings.model_fields["batch_schedule_minutes"].default
    assert int(k) >= 3  # a healthy horizon is up to a bucket, a schedule and a run old


# --- the scrape configurations ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_checked_in_configuration_is_what_the_settings_render(
    name: str, defaults: Settings
) -> None:
    checked_in = yaml.safe_load((PROMETHEUS / name).read_text())
    render = CONFIGS[name]
    expected = render(defaults, "alerts.yml") if name == "prometheus.yml" else render(defaults)
    assert checked_in == expected


def test_local_configuration_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDA_SPEED_PROCESSES", "3")
    monkeypatch.setenv("LAMBDA_SPEED_METRICS_PORT", "9500")
    monkeypatch.setenv("LAMBDA_API_PORT", "8100")
    jobs = {j["job_name"]: j for j in local_config(Settings())["scrape_configs"]}
    speed = [t for g in jobs["speed"]["static_configs"] for t in g["targets"]]
    assert speed == ["127.0.0.1:9500", "127.0.0.1:9501", "127.0.0.1:9502"]
    assert jobs["serving"]["static_configs"][0]["targets"] == ["127.0.0.1:8100"]
    assert local_config(Settings())["rule_files"] == [str(RULES)]


def test_local_prometheus_is_off_by_default_and_one_setting_starts_it(
    defaults: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    names = [s.name for s in platform_services(defaults, demo=False, demo_rate=0)]
    assert "prometheus" not in names
    monkeypatch.setenv("LAMBDA_PROMETHEUS_ENABLED", "1")
    monkeypatch.setenv("LAMBDA_DATA_DIR", str(tmp_path))
    settings = Settings()
    names = [s.name for s in platform_services(settings, demo=False, demo_rate=0)]
    assert names[names.index("serving") + 1] == "prometheus"  # after what it scrapes


def test_local_prometheus_without_its_binary_names_what_to_install(
    defaults: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=re.escape(MISSING_BINARY)):
        prometheus_service(defaults).command()
    assert "apt-get install -y prometheus" in MISSING_BINARY


def test_local_prometheus_command(
    defaults: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    settings = defaults.model_copy(update={"data_dir": tmp_path})
    argv = prometheus_service(settings).command()
    assert argv[0] == "/usr/bin/prometheus"
    assert f"--config.file={tmp_path / 'prometheus' / 'prometheus.yml'}" in argv
    assert f"--storage.tsdb.path={tmp_path / 'prometheus' / 'data'}" in argv
    assert "--web.listen-address=127.0.0.1:9090" in argv
    written = yaml.safe_load((tmp_path / "prometheus" / "prometheus.yml").read_text())
    assert written == local_config(settings)


def test_cluster_prometheus_runs_on_this_machine_with_the_cluster_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``LAMBDA_PROMETHEUS_ENABLED=1 make cluster-up``: Prometheus after serving, outside the
    hosts, scraping each at its bridge address, with the rules by their path; off by default."""
    assert "prometheus" not in [s.name for s in Cluster.of(tmp_path).services()]
    cluster = Cluster.of(tmp_path, monitoring=True)
    names = [s.name for s in cluster.services()]
    assert names[names.index("serving") + 1] == "prometheus"
    assert cluster.address(cluster.host_of("prometheus")) == "127.0.0.1"
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    argv = cluster.prometheus().command()
    written = tmp_path / "cluster" / "prometheus" / "prometheus.yml"
    assert f"--config.file={written}" in argv
    config = yaml.safe_load(written.read_text())
    checked_in = yaml.safe_load((PROMETHEUS / "prometheus-cluster.yml").read_text())
    assert config == {**checked_in, "rule_files": [str(RULES)]}
    _promtool("check", "config", str(written))


# --- compose and Grafana ---------------------------------------------------------------------


def test_compose_mounts_the_configuration_and_rules_where_the_images_read_them(
    defaults: Settings,
) -> None:
    prometheus = COMPOSE["services"]["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./infra/prometheus/prometheus-compose.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == "./infra/prometheus/alerts.yml"
    grafana = COMPOSE["services"]["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./infra/grafana/provisioning"
    # Every compose target is a compose service.
    for job in compose_config(defaults)["scrape_configs"]:
        for group in job["static_configs"]:
            host = group["targets"][0].split(":")[0]
            assert host == "localhost" or host in COMPOSE["services"], host


def test_grafana_provisioning_loads_and_points_at_prometheus() -> None:
    (source,) = yaml.safe_load((GRAFANA / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((GRAFANA / "dashboards" / "lambda-platform.yml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards"
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])
