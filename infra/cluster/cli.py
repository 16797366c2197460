"""``lambda-platform cluster up|status|down`` (``make cluster-up`` …): the platform as separate
hosts on one machine, each a network namespace on a private bridge (root needed).

``up`` is idempotent like ``make up``: it makes what is missing of the network and starts only
the services that are down, so an operator brings a killed host back by running it again.
``down`` stops every service, then removes every namespace, link and hosts file; the hosts'
data stays under ``<data dir>/cluster`` unless ``--purge``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from infra.cluster import netns
from infra.cluster.kafka_security import ADMIN_USER
from infra.cluster.services import Cluster, Step
from infra.cluster.topology import HOSTS, KAFKA_HOSTS, PORTS, Network
from infra.keeper import Keeper, clear_records, read_record
from infra.services import speed_health_cell
from infra.supervisor import Service, ServiceError
from lambda_contracts.layout import Layout
from lambda_contracts.settings import get_settings

app = typer.Typer(add_completion=False, help=__doc__)
# Piped output (a test, a log) gets rows wide enough for 13 hosts' names and addresses.
console = Console(width=None if sys.stdout.isatty() else 140)


def _cluster() -> Cluster:
    settings = get_settings()
    net = Network(prefix=settings.cluster_prefix, subnet=settings.cluster_subnet)
    # Once made secured, a cluster stays so until `down --purge`: its brokers hold the users.
    made_secured = (settings.data_dir / "cluster" / "kafka-security" / "users.json").exists()
    secured = settings.cluster_kafka_security == "sasl_ssl" or made_secured
    return Cluster.of(
        settings.data_dir, net, monitoring=settings.prometheus_enabled, kafka_security=secured
    )


KEEPER = "keeper"


def _keeper_service(cluster: Cluster, demo: bool) -> Service:
    """The resident keeper of the cluster, on the machine itself (it starts hosts' services
    as ``up`` does): it restarts a service that died, with backoff, like compose's policy."""
    argv = [sys.executable, "-m", "infra.platform", "cluster", "keep"]
    return Service(KEEPER, lambda: [*argv, "--demo" if demo else "--no-demo"], lambda: True)


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="run the demo producer (DEMO=0 disables)")] = True,
    keeper: Annotated[bool, typer.Option(help="restart services that die")] = True,
) -> None:
    """Make the network and start every service that is down, stage by stage."""
    demo = demo and os.environ.get("DEMO", "1") not in ("0", "false", "no", "")
    cluster = _cluster()
    # The keeper must not restart a service while ``up`` starts it too.
    if not cluster.supervisor.stop(KEEPER):
        clear_records(cluster.supervisor, [s.name for s in cluster.services()])
    try:
        netns.up(cluster.net)
    except netns.NetworkError as exc:
        console.print(f"[red]✗ network[/red]: {exc}")
        raise typer.Exit(1) from exc
    for host in HOSTS:
        cluster.host_dir(host.name).mkdir(parents=True, exist_ok=True)
    sup = cluster.supervisor
    try:
        for stage in cluster.stages(demo):
            if isinstance(stage, Step):
                if all(sup.pid(name) is not None for name in stage.needed_by):
                    continue
                cluster.run_step(stage)
                console.print(f"[green]✓ {stage.name}[/green] on {stage.host}")
                continue
            already = {s.name: sup.pid(s.name) for s in stage}
            pids = {s.name: sup.spawn(s) for s in stage}
            for service in stage:
                sup.wait_healthy(service)
                state = "already running" if already[service.name] else "started"
                host = cluster.host_of(service.name)
                console.print(
                    f"[green]✓ {service.name}[/green] {state} on {host} "
                    f"({cluster.address(host)}, pid {pids[service.name]})"
                )
    except (ServiceError, subprocess.TimeoutExpired) as exc:
        console.print(f"[red]✗[/red] {exc}")
        raise typer.Exit(1) from exc
    if keeper:
        sup.start(_keeper_service(cluster, demo))
    _print_where(cluster)


@app.command(hidden=True)
def keep(demo: Annotated[bool, typer.Option()] = True) -> None:
    """Run the cluster's keeper in the foreground (``up`` starts it)."""
    cluster = _cluster()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    services = [s for s in cluster.services() if demo or s.name != "producer"]
    Keeper(cluster.supervisor, services).run(stop)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per service")] = False,
) -> None:
    """Each host, its address, its services with pid and health, and Kafka's replicas."""
    cluster = _cluster()
    sup = cluster.supervisor
    rows = []
    for service in cluster.services():
        host = cluster.host_of(service.name)
        pid = sup.pid(service.name)
        if pid is None:
            health = "down"
        elif service.name.startswith("speed-"):
            health = speed_health_cell(cluster.speed_report(service.name))
        else:
            health = "healthy" if service.healthy() else "unhealthy"
        restarts = read_record(sup, service.name).restarts
        rows.append({"host": host, "address": cluster.address(host), "service": service.name,
                     "pid": pid, "health": health, "restarts": restarts})  # fmt: skip
    kafka = kafka_report(cluster)
    if as_json:
        print(json.dumps({"services": rows, "kafka": kafka}))
    else:
        table = Table("host", "address", "service", "pid", "health", "restarts")
        for row in rows:
            table.add_row(row["host"], row["address"], row["service"], str(row["pid"] or "-"),
                          row["health"], str(row["restarts"]))  # fmt: skip
        console.print(table)
        console.print(f"keeper: {'running' if sup.pid(KEEPER) else 'not running'}")
        console.print(f"kafka: {kafka}")
    if all(r["pid"] is None for r in rows):
        sys.exit(3)
    if any(not r["health"].startswith("healthy") for r in rows):
        sys.exit(1)


def kafka_report(cluster: Cluster) -> dict[str, object]:
    """Brokers in the cluster and under-replicated partitions, asked from inside a host
    (brokers advertise host names, which resolve only there)."""
    if all(cluster.supervisor.pid(host) is None for host in KAFKA_HOSTS):
        return {"error": "no broker running"}
    probe = [sys.executable, "-m", "infra.cluster.probe"]
    step = Step("kafka-report", "producer", probe, 60, env=cluster.kafka_login(ADMIN_USER))
    try:
        return json.loads(cluster.run_step(step).splitlines()[-1])
    except (ServiceError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return {"error": str(exc).splitlines()[-1] if str(exc) else type(exc).__name__}


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context, host: Annotated[str, typer.Argument(help="a host of the cluster")]
) -> None:
    """Run a command on a host with its settings, e.g. ``run airflow lambda-platform airflow
    dags trigger lambda_batch`` or ``run producer lambda-produce --count 100``."""
    cluster = _cluster()
    if host not in [h.name for h in HOSTS]:
        raise typer.BadParameter(f"no host {host!r}: one of {', '.join(h.name for h in HOSTS)}")
    argv = cluster.on(host, ctx.args)
    raise typer.Exit(subprocess.run(argv, env={**os.environ, **cluster.env(host)}).returncode)


@app.command()
def down(
    purge: Annotated[bool, typer.Option(help="also delete the hosts' data")] = False,
) -> None:
    """Stop every service, then remove the namespaces, links and hosts files."""
    cluster = _cluster()
    sup = cluster.supervisor
    sup.stop(KEEPER)  # first, or it restarts what is being stopped
    # Prometheus too, whether this ``down`` was told it runs or not.
    for service in reversed(replace(cluster, monitoring=True).services()):
        if sup.stop(service.name, service.stop_timeout_s):
            console.print(f"stopped {service.name}")
    try:
        netns.down(cluster.net)
    except netns.NetworkError as exc:
        console.print(f"[red]✗ network[/red]: {exc}")
        raise typer.Exit(1) from exc
    if purge:
        shutil.rmtree(cluster.root, ignore_errors=True)
    console.print("cluster is down: no namespace, no process" + (", no data" if purge else ""))


def _print_where(cluster: Cluster) -> None:
    def at(host: str, port: int) -> str:
        return f"http://{cluster.address(host)}:{port}"

    password = Layout(cluster.host_dir("airflow")).airflow_dir / "admin-password.json"
    console.print(
        f"""
[bold]Lambda cluster is up[/bold] ({len(HOSTS)} hosts on {cluster.net.subnet})
  Serving API : {at("serving", PORTS["serving"])}/v1/...
  Airflow UI  : {at("airflow", PORTS["airflow"])}  user admin, password in {password}
  Spark master: {at("spark-master", 8080)}
  Kafka       : kafka-1:9092,kafka-2:9092,kafka-3:9092 (names resolve inside the hosts:
                ip netns exec {cluster.net.namespace("producer")} <command>)
  Logs        : {cluster.supervisor.logs_dir}
  Status/stop : make cluster-status  |  make cluster-down
"""
    )
    if cluster.monitoring:
        port = cluster.settings("serving").prometheus_port
        console.print(f"  Prometheus  : http://127.0.0.1:{port} (on this machine, alerts loaded)")
