"""The cluster's service table: every host of the topology runs what it says, with settings
that parse, and the brokers form one quorum with the lecture's durability."""

from __future__ import annotations

from pathlib import Path

from infra.cluster.services import Cluster, Step
from infra.cluster.topology import HOSTS, KAFKA_HOSTS, Network


def cluster(tmp_path: Path) -> Cluster:
    return Cluster.of(tmp_path, Network(prefix="ut-", subnet="10.213.79.0/24"))


def test_every_service_of_the_topology_is_run_on_its_host(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    names = [s.name for s in c.services()]
    assert sorted(names) == sorted(s for h in HOSTS for s in h.services)
    assert len(names) == len(set(names))
    for name in names:
        env = next(s for s in c.services() if s.name == name).env  # its host's settings
        assert env["LAMBDA_DATA_DIR"] == str(tmp_path / "cluster" / c.host_of(name))
    assert "producer" not in [s.name for st in c.stages(demo=False) if isinstance(st, list)
                              for s in st]  # fmt: skip


def test_brokers_are_one_quorum_that_acknowledges_on_two_of_three(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    voters = {c.kafka_node(h)["controller.quorum.voters"] for h in KAFKA_HOSTS}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    for node_id, host in enumerate(KAFKA_HOSTS, start=1):
        node = c.kafka_node(host)
        assert node["node.id"] == str(node_id)
        assert node["listeners"].startswith(f"PLAINTEXT://{c.address(host)}:9092")
        assert node["advertised.listeners"] == f"PLAINTEXT://{host}:9092"
        assert (node["default.replication.factor"], node["min.insync.replicas"]) == ("3", "2")
        assert node["unclean.leader.election.enable"] == "false"
        assert node["offsets.topic.replication.factor"] == "3"


def test_each_host_reads_the_cluster_settings_and_its_own(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    speed = c.settings("speed-1")
    assert speed.bootstrap_servers == ["kafka-1:9092", "kafka-2:9092", "kafka-3:9092"]
    assert (speed.replication_factor, speed.min_insync_replicas) == (3, 2)
    assert speed.speed_store_url.startswith("postgresql+psycopg://")
    assert speed.storage_url == "s3://lambda/master"
    assert c.settings("airflow").spark_driver_host == "airflow"  # executors reach the driver
    assert c.settings("serving").api_host == "0.0.0.0"
    assert c.env("airflow")["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert c.store_url().host == c.address("postgres")  # the machine reaches it by address
    steps = [s for s in c.stages() if isinstance(s, Step)]
    assert [s.name for s in steps] == ["topics", "airflow-init"]
    assert all(s.needed_by for s in steps)  # an up that restarts one broker skips them
