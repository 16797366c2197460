"""The cluster of ``make cluster-up`` under host faults, shortened for CI:
``python -m bench.cluster_chaos --seconds 300`` (the stream has to outlast a 90 s link cut).

The run referees itself (the topic read back whole, the independent oracle, the serving
host's API, the landing files on the object store, the DLQ, Kafka's replicas); this test holds
it to every check and to having injected each of the five faults; among them ``speed-1``'s
link cut mid-transaction, after which ``speed-2`` must count every partition again within 60 s.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from infra.cluster import netns
from infra.cluster.topology import Network
from tests.support.fault_runs import run_fault_run

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="hosts are network namespaces"
    ),
]

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "bench" / "results" / "cluster-chaos-ci.json"
# Not the names and subnet of `make cluster-up`: the test never touches a running cluster.
NET = Network(prefix="lct-", subnet="10.213.81.0/24")


@pytest.mark.timeout(3600)  # past its own time-out, which stops the run cleanly
def test_cluster_faults_lose_nothing_and_count_nothing_twice() -> None:
    netns.down(NET)  # a leftover of an interrupted run
    REPORT.unlink(missing_ok=True)
    args = ["--seconds", "300", "--report", "cluster-chaos-ci"]
    rc, out = run_fault_run("bench.cluster_chaos", [*args, "--prefix", NET.prefix,
                                                    "--subnet", NET.subnet], 2700)  # fmt: skip
    assert rc == 0, out[-20000:]
    report = json.loads(REPORT.read_text())
    assert report["failed_checks"] == []
    assert len(report["faults"]) == 5
    assert report["lost"] == 0 and report["double"] == 0
    assert report["kafka"] == {"brokers": [1, 2, 3], "under_replicated": []}
    assert report["invalid"] > 0 and report["dlq"]["missing"] == 0
    assert report["current_versions_seen"] and all(report["current_versions_seen"].values())
    assert not any(ns.startswith(NET.prefix) for ns in netns.namespaces())  # down left nothing
