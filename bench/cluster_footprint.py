"""What the compose stack needs, measured on its local equivalent: the cluster mode's hosts.

    sudo .venv/bin/python -m bench.cluster_footprint [--steady-s 420]

``make cluster-up`` runs the same services as ``docker-compose.yml`` (three brokers,
PostgreSQL, the S3 server, a Spark master and two workers, Airflow's four parts, two speed
processes, serving, the demo producer) as separate hosts. This starts it (or uses the running
one), lets it run with the demo stream through at least one scheduled batch run, and samples
every 5 s, per host: the PSS of every process of its services (each service is a session of
its own, so a task's spark-submit counts with the scheduler that started it) and the size of
the host's data directory. Prints the steady and peak memory and the disk growth, and writes
``bench/results/cluster_footprint.json``. ``--down`` stops the cluster afterwards.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import write_report
from infra.cluster.services import Cluster
from infra.cluster.topology import Network
from lambda_contracts.settings import get_settings

console = Console()
MIB = 1024 * 1024


def session_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, ValueError, IndexError):
        return None


def pss_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory_by_host(cluster: Cluster, hosts: list[str]) -> dict[str, int]:
    """PSS per host: every process in the session of one of the host's services, and every
    process whose command line names the host's directory (PostgreSQL's server daemonizes
    into a session of its own)."""
    sessions = {}
    for service in cluster.services():
        pid = cluster.supervisor.pid(service.name)
        if pid is not None:
            sessions[pid] = cluster.host_of(service.name)
    dirs = {f"{cluster.host_dir(h)}/": h for h in hosts}
    out: dict[str, int] = defaultdict(int)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        host = sessions.get(session_of(int(entry.name)) or -1)
        if host is None:
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            host = next((h for d, h in dirs.items() if d in cmdline), None)
        if host is not None:
            out[host] += pss_of(int(entry.name))
    return dict(out)


def disk_bytes(path: Path) -> int:
    """Blocks in use (not the apparent size: Kafka preallocates sparse index files)."""
    result = subprocess.run(["du", "-sB1", str(path)], capture_output=True, text=True)
    return int(result.stdout.split()[0]) if result.returncode == 0 and result.stdout else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steady-s", type=int, default=420, help="seconds to sample")
    parser.add_argument("--down", action="store_true", help="stop the cluster afterwards")
    args = parser.parse_args()
    settings = get_settings()
    net = Network(prefix=settings.cluster_prefix, subnet=settings.cluster_subnet)
    cluster = Cluster.of(settings.data_dir, net)
    platform = [str(Path(sys.executable).parent / "lambda-platform"), "cluster"]
    subprocess.run([*platform, "up"], check=True)
    hosts = sorted({cluster.host_of(s.name) for s in cluster.services()})
    parts = [*hosts, "logs"]  # each host's directory, and the services' logs beside them
    disk_start = {p: disk_bytes(cluster.host_dir(p)) for p in parts}
    samples: list[dict[str, int]] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.steady_s:
            samples.append(memory_by_host(cluster, hosts))
            time.sleep(5)
    finally:
        disk_end = {p: disk_bytes(cluster.host_dir(p)) for p in parts}
        if args.down:
            subprocess.run([*platform, "down"], check=False)
    totals = [sum(s.values()) for s in samples]
    elapsed_h = (time.monotonic() - started) / 3600
    growth = sum(disk_end.values()) - sum(disk_start.values())
    figures = {
        "steady_s": args.steady_s,
        "samples": len(samples),
        "memory_pss_mib": {
            "median": round(sorted(totals)[len(totals) // 2] / MIB),
            "peak": round(max(totals) / MIB),
        },
        "peak_by_host_mib": {
            h: round(max(s.get(h, 0) for s in samples) / MIB) for h in hosts
        },
        "disk_mib": {"start": round(sum(disk_start.values()) / MIB),
                     "end": round(sum(disk_end.values()) / MIB),
                     "growth_mib": round(growth / MIB), "hours": round(elapsed_h, 2)},
        "disk_end_by_host_mib": {h: round(v / MIB) for h, v in disk_end.items()},
        "command": f"python -m bench.cluster_footprint --steady-s {args.steady_s}",
    }  # fmt: skip
    write_report("cluster_footprint", figures)
    table = Table("host", "peak PSS (MiB)", "disk at end (MiB)", title="cluster footprint")
    for part in parts:
        peak = figures["peak_by_host_mib"].get(part, "-")
        table.add_row(part, str(peak), str(figures["disk_end_by_host_mib"][part]))
    table.add_row("total", str(figures["memory_pss_mib"]["peak"]), str(figures["disk_mib"]["end"]))
    console.print(table)


if __name__ == "__main__":
    main()
