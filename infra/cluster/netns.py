"""The cluster's network: a bridge, and one network namespace per host linked to it by a veth.

Made and removed only by this module (root needed). ``up`` is idempotent: it creates what is
missing and leaves what exists, so it also repairs a host whose namespace was deleted. ``down``
stops every process still inside a host (SIGTERM, then SIGKILL), then removes the namespaces,
the bridge and the hosts files: nothing is left behind. Traffic stays on the bridge: no route
leaves it and forwarding is not turned on.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from infra.cluster.topology import HOSTS, Network

NETNS_ETC = Path("/etc/netns")  # `ip netns exec` bind-mounts <ns>/hosts over /etc/hosts


class NetworkError(RuntimeError):
    """The cluster network could not be made or removed; the message says which step."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def require_root() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise NetworkError(
            "the cluster's hosts are network namespaces: run as root with iproute2 installed "
            "(apt-get install iproute2)"
        )


def namespaces() -> set[str]:
    out = _ip("netns", "list").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _link_exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


def up(net: Network, hosts: Sequence[str] | None = None) -> None:
    """Create the bridge and every host's namespace, link, addresses and hosts file."""
    require_root()
    if not _link_exists(net.bridge):
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.gateway()}/{net.prefix_len()}", "dev", net.bridge)
    _ip("link", "set", net.bridge, "up")
    existing = namespaces()
    for host in hosts or [h.name for h in HOSTS]:
        ns = net.namespace(host)
        if ns not in existing:
            _ip("netns", "add", ns)
        inside = ("-n", ns)
        if _ip(*inside, "link", "show", "eth0", check=False).returncode != 0:
            if _link_exists(net.veth(host)):  # half made by an interrupted run
                _ip("link", "del", net.veth(host))
            _ip("link", "add", net.veth(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip(*inside, "addr", "add", f"{net.address(host)}/{net.prefix_len()}", "dev", "eth0")
        _ip("link", "set", net.veth(host), "master", net.bridge, "up")
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "link", "set", "eth0", "up")
        etc = NETNS_ETC / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(net.hosts_file())


def exec_argv(net: Network, host: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` on ``host``: in its network namespace, with its
    hosts file, and in a UTS namespace of its own whose hostname is the host's name (Java's
    and Spark's "local host" must resolve, and to the host's own address). Each step execs
    the next, so the pid started is the service's own."""
    named = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host]
    return ["ip", "netns", "exec", net.namespace(host), *named, *argv]


def host_pids(net: Network, host: str) -> list[int]:
    """Every process inside a host's namespace."""
    done = _ip("netns", "pids", net.namespace(host), check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def stop_host(net: Network, host: str, timeout_s: float = 20.0) -> None:
    """SIGTERM every process of a host, SIGKILL what is left after ``timeout_s``."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        pids = host_pids(net, host)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + wait_s
        while host_pids(net, host) and time.monotonic() < deadline:
            time.sleep(0.2)
    if host_pids(net, host):
        raise NetworkError(f"processes on {host} survived SIGKILL: {host_pids(net, host)}")


def down(net: Network) -> None:
    """Stop every process on every host, then remove namespaces, links, bridge, hosts files."""
    require_root()
    existing = namespaces()
    for host in [h.name for h in HOSTS]:
        ns = net.namespace(host)
        if ns in existing:
            stop_host(net, host)
            _ip("netns", "del", ns)
        # Deleting the namespace destroys its veth pair, asynchronously: tolerate either order.
        _ip("link", "del", net.veth(host), check=False)
        shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
    _ip("link", "del", net.bridge, check=False)
    left = [n for n in namespaces() if n.startswith(net.prefix)]
    if left or _link_exists(net.bridge):
        raise NetworkError(f"left behind: namespaces {left}, bridge {_link_exists(net.bridge)}")
