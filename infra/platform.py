"""``lambda-platform up|down|status``: the whole platform in local mode, no Docker needed.

``up`` starts what is down (re-running it is harmless), waits for health, prints where things
are; ``down`` stops every service cleanly; ``status`` shows each service, its pid and health.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from infra.airflow_env import AIRFLOW_PORT, API_HOST, admin_password, airflow_env, password_file
from infra.services import platform_services
from infra.supervisor import ServiceError, Supervisor
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings, get_settings

app = typer.Typer(add_completion=False, help=__doc__)
console = Console()


def _service_names(settings: Settings) -> list[str]:
    """Every name a service of this platform may run under, in start order."""
    names = [s.name for s in platform_services(settings, demo=True, demo_rate=0)]
    # Speed processes beyond the configured count may still run from an earlier ``up``.
    extra = [f"speed-{i}" for i in range(settings.speed_processes, 16)]
    return names[:1] + extra + names[1:]


def _supervisor(settings: Settings) -> Supervisor:
    assert settings.logs_dir is not None
    return Supervisor(Layout(settings.data_dir).run_dir, settings.logs_dir)


def _demo_enabled() -> bool:
    return os.environ.get("DEMO", "1") not in ("0", "false", "no", "")


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="run the demo producer (DEMO=0 disables)")] = True,
    demo_rate: Annotated[float, typer.Option(help="demo events per second")] = 20.0,
) -> None:
    """Start every service that is down and wait until each is healthy."""
    settings = get_settings()
    sup = _supervisor(settings)
    services = platform_services(settings, demo and _demo_enabled(), demo_rate)
    for service in services:
        already = sup.pid(service.name)
        try:
            pid = sup.start(service)
        except ServiceError as exc:
            console.print(f"[red]✗ {service.name}[/red]: {exc}")
            raise typer.Exit(1) from exc
        state = "already running" if already else "started"
        console.print(f"[green]✓ {service.name}[/green] {state} (pid {pid})")
    _print_where(settings)


@app.command()
def down() -> None:
    """Stop every service (SIGTERM, wait, then SIGKILL); leave no process behind."""
    settings = get_settings()
    sup = _supervisor(settings)
    for name in reversed(_service_names(settings)):
        if sup.stop(name):
            console.print(f"stopped {name}")
    console.print("all services are down")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def airflow(ctx: typer.Context) -> None:
    """Run an ``airflow`` command with the platform's Airflow configuration (e.g. ``dags list``).

    Variables already set in the environment win, so docker compose can run each Airflow
    component through this command with its own database and host settings.
    """
    settings = get_settings()
    env = {**airflow_env(settings), **os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    completed = subprocess.run(["airflow", *ctx.args], env=env)
    raise typer.Exit(completed.returncode)


@app.command()
def status() -> None:
    """Show each service, its pid and its health."""
    settings = get_settings()
    sup = _supervisor(settings)
    table = Table("service", "pid", "health", "log")
    known = {s.name: s for s in platform_services(settings, True, 0)}
    any_running = False
    for name in _service_names(settings):
        pid = sup.pid(name)
        service = known.get(name)
        if pid is None and service is None:
            continue
        if pid is None:
            health = "down"
        else:
            any_running = True
            health = "healthy" if service is None or service.healthy() else "unhealthy"
        table.add_row(name, str(pid or "-"), health, str(sup.log_file(name)))
    console.print(table)
    if not any_running:
        sys.exit(3)


def _print_where(settings: Settings) -> None:
    layout = Layout(settings.data_dir)
    console.print(
        f"""
[bold]Lambda platform is up[/bold]
  Kafka bootstrap : {settings.kafka_bootstrap}  (topics {settings.topic}, {settings.dlq_topic})
  Speed metrics   : http://127.0.0.1:{settings.speed_metrics_port}/metrics (+1 per process)
  Speed store     : {settings.speed_store_url}
  Serving API     : http://{settings.api_host}:{settings.api_port}/v1/...  docs /docs, dashboard /
  Airflow UI      : http://{API_HOST}:{AIRFLOW_PORT} user admin, password {admin_password(settings)}
                    (kept in {password_file(settings)}, mode 0600)
  Data directory  : {layout.data_dir}
  Logs            : {settings.logs_dir}
  Status / stop   : make status  |  make down
"""
    )


if __name__ == "__main__":
    app()
