"""The cluster's Kafka nodes: what makes each broker host one of three combined KRaft nodes."""

from __future__ import annotations

from collections.abc import Callable

from infra.cluster.topology import CLUSTER_ENV, KAFKA_HOSTS, PORTS


def kafka_node_properties(host: str, address: Callable[[str], str]) -> dict[str, str]:
    """The keys of ``server.properties`` that make ``host`` one of three combined nodes
    with the lecture's durability: 3 replicas, 2 in sync to acknowledge, no unclean
    leader election, and the internal topics replicated the same way."""
    node_id = KAFKA_HOSTS.index(host) + 1
    voters = ",".join(
        f"{i}@{h}:{PORTS['kafka-controller']}" for i, h in enumerate(KAFKA_HOSTS, start=1)
    )
    addr = address(host)
    # The same replication the platform's topics declare (one setting for both).
    rf, isr = (
        CLUSTER_ENV["LAMBDA_REPLICATION_FACTOR"],
        CLUSTER_ENV["LAMBDA_MIN_INSYNC_REPLICAS"],
    )
    return {
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{addr}:{PORTS['kafka']},"
        f"CONTROLLER://{addr}:{PORTS['kafka-controller']}",
        "advertised.listeners": f"PLAINTEXT://{host}:{PORTS['kafka']}",
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        "auto.create.topics.enable": "false",
    }
