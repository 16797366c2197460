"""The cluster's network: hosts as namespaces that reach each other by name, and nothing left
after ``down`` (no namespace, no link, no hosts file, no process)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from infra.cluster import netns
from infra.cluster.topology import HOSTS, Network
from tests.support.pipeline import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
    ),
]

# Not the cluster's own names and subnet: a test never touches a running cluster.
NET = Network(prefix="lt-", subnet="10.213.78.0/24")

PORT = 20925  # not a port anything of this machine's root namespace uses
ECHO_SERVER = (
    "import socket\n"
    f"s = socket.create_server(('0.0.0.0', {PORT}))\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    c.sendall(b'echo:' + c.recv(64))\n"
    "    c.close()\n"
)
CLIENT = (
    "import socket, sys\n"
    f"c = socket.create_connection((sys.argv[1], {PORT}), timeout=5)\n"
    "c.sendall(b'ping'); print(c.recv(64).decode())\n"
)


@pytest.fixture
def network() -> Iterator[Network]:
    netns.down(NET)  # a leftover of an interrupted run
    try:
        netns.up(NET, ["kafka-1", "serving"])
        yield NET
    finally:
        netns.down(NET)


def test_hosts_reach_each_other_by_name_and_down_leaves_nothing(network: Network) -> None:
    server = subprocess.Popen(
        netns.exec_argv(network, "kafka-1", [sys.executable, "-c", ECHO_SERVER])
    )
    try:

        def answers() -> bool:
            argv = netns.exec_argv(network, "serving", [sys.executable, "-c", CLIENT, "kafka-1"])
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return done.returncode == 0 and done.stdout.strip() == "echo:ping"

        wait_until(answers, 20, f"kafka-1:{PORT} to answer from serving")
        # The server listens inside kafka-1 only: not on this machine's loopback.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
        netns.up(network, ["kafka-1", "serving"])  # idempotent while hosts run
        assert answers()
        assert server.pid in netns.host_pids(network, "kafka-1")
    finally:
        netns.down(network)
        server.wait(timeout=30)
    assert not {ns for ns in netns.namespaces() if ns.startswith(NET.prefix)}
    assert subprocess.run(["ip", "link", "show", NET.bridge], capture_output=True).returncode
    assert not [p for p in netns.NETNS_ETC.glob(f"{NET.prefix}*")]


def test_every_host_has_its_own_address_and_name() -> None:
    addresses = [NET.address(h.name) for h in HOSTS]
    assert len(set(addresses)) == len(HOSTS)
    assert all(len(NET.veth(h.name)) <= 15 for h in HOSTS)
    hosts_file = NET.hosts_file()
    assert all(f"{NET.address(h.name)} {h.name}\n" in hosts_file for h in HOSTS)
