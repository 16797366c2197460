"""``lambda-platform up|down|status|deploy``: the whole platform in local mode, no Docker.

``up`` starts what is down (re-running it is harmless), waits for health, prints where things
are; ``down`` stops every service cleanly; ``status`` shows each service, its pid and health;
``deploy`` applies the views file to the running platform.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from infra import airflow_upkeep as upkeep
from infra import db_roles
from infra.airflow_env import (
    AIRFLOW_PORT,
    API_HOST,
    admin_password,
    airflow_env,
    jwt_env,
    password_file,
)
from infra.cluster import cli as cluster_cli
from infra.keeper import Keeper, clear_records, hold, is_held, read_record, release
from infra.log_rotation import LogRotation
from infra.s3_server import SERVICE as S3_SERVICE
from infra.s3_server import ensure_bucket
from infra.services import keeper_service, platform_services, speed_health, speed_health_cell
from infra.supervisor import Service, ServiceError, Supervisor
from infra.topics import TopicMismatchError
from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings, get_settings
from lambda_contracts.startup import EXIT_CONFIG, checked_layout
from lambda_contracts.storage_url import parse_s3_url
from lambda_contracts.view_declarations import DeclarationError
from lambda_contracts.view_set import (
    ViewSet,
    deployed_fingerprint,
    registered_versions,
    with_previous,
)

DEMO_RATE = 20.0  # the demo producer's events per second (``start producer`` uses it too)

app = typer.Typer(add_completion=False, help=__doc__)
app.add_typer(cluster_cli.app, name="cluster")
console = Console()


def _service_names(settings: Settings) -> list[str]:
    """Every name a service of this platform may run under, in start order."""
    names = [s.name for s in platform_services(settings, demo=True, demo_rate=0)]
    # Speed processes beyond the configured count may still run from an earlier ``up``, and
    # Prometheus from an ``up`` with LAMBDA_PROMETHEUS_ENABLED=1.
    extra = [f"speed-{i}" for i in range(settings.speed_processes, 16)]
    late = [] if "prometheus" in names else ["prometheus"]
    return names[:1] + extra + names[1:] + late + ["keeper"]


def _supervisor(settings: Settings) -> Supervisor:
    assert settings.logs_dir is not None
    return Supervisor(Layout(settings.data_dir).run_dir, settings.logs_dir)


def _demo_enabled() -> bool:
    return os.environ.get("DEMO", "1") not in ("0", "false", "no", "")


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="run the demo producer (DEMO=0 disables)")] = True,
    demo_rate: Annotated[float, typer.Option(help="demo events per second")] = DEMO_RATE,
) -> None:
    """Start every service that is down and wait until each is healthy."""
    settings = get_settings()
    sup = _supervisor(settings)
    demo = demo and _demo_enabled()
    first_start = not password_file(settings).exists()  # made with the services' environment
    services = platform_services(settings, demo, demo_rate)
    # The keeper must not restart a service while ``up`` starts it too: stop it, start what
    # is down, then start it again (with fresh restart counts if it was not running).
    if not sup.stop("keeper"):
        clear_records(sup, [s.name for s in services])
    storage_first = [s for s in services if s.name == S3_SERVICE]
    for service in storage_first:
        _start(sup, service, settings)
    checked_layout(settings)  # a bad storage setting stops here, before the layers start
    for service in [s for s in services if s not in storage_first]:
        _start(sup, service, settings)
    _start(sup, keeper_service(demo, demo_rate), settings)
    _print_where(settings, show_password=first_start)


@app.command("storage-init")
def storage_init() -> None:
    """Create the bucket of LAMBDA_STORAGE_URL if it is missing, then check the store (what
    compose's s3-init runs before the layers start); nothing to do on the local default."""
    settings = get_settings()
    if settings.storage_url is not None:
        bucket = parse_s3_url(settings.storage_url).bucket
        created = ensure_bucket(
            settings.s3_endpoint,
            bucket,
            os.environ.get("AWS_ACCESS_KEY_ID") or None,
            os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            settings.s3_region,
        )
        console.print(f"bucket {bucket}: {'created' if created else 'exists'}")
    layout = checked_layout(settings)
    console.print(f"[green]✓[/green] storage {layout.store.describe()}")


def _error(message: str) -> None:
    """One line on the console, whatever its width, as every refusal of the platform."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


@app.command("db-init")
def db_init() -> None:
    """Make the PostgreSQL databases and roles (one per service, with only the privileges it
    uses) and the speed store's tables, from LAMBDA_DB_ADMIN_URL and each role's
    LAMBDA_DB_<ROLE>_URL (speed, batch, serving, airflow); safe to run again."""
    try:
        logins = db_roles.DbInitSettings().logins()  # type: ignore[call-arg]
    except ValidationError as exc:
        unset = ", ".join(f"LAMBDA_DB_{str(e['loc'][0]).upper()}" for e in exc.errors())
        _error(f"db-init needs {unset}")
        raise typer.Exit(EXIT_CONFIG) from exc
    except ValueError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_CONFIG) from exc
    try:
        db_roles.provision(logins)
    except (psycopg.Error, DBAPIError) as exc:
        where = f"{logins.admin.host}:{logins.admin.port or 5432}"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _error(f"db-init at {where}: {first}")
        raise typer.Exit(1) from exc
    names = ", ".join(str(url.username) for url in (*logins.store.values(), logins.airflow))
    console.print(f"[green]✓[/green] databases {logins.store_database} and "
                  f"{logins.airflow.database}; roles {names}")  # fmt: skip


@app.command(hidden=True)
def keep(
    demo: Annotated[bool, typer.Option()] = True,
    demo_rate: Annotated[float, typer.Option()] = DEMO_RATE,
) -> None:
    """Run the keeper in the foreground (``up`` starts it): restart services that die."""
    settings = get_settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rotation = LogRotation(settings.log_max_bytes, settings.log_keep)
    services = platform_services(settings, demo, demo_rate)
    Keeper(_supervisor(settings), services, rotation=rotation).run(stop)


@app.command()
def down() -> None:
    """Stop every service (SIGTERM, wait, then SIGKILL); leave no process behind."""
    settings = get_settings()
    sup = _supervisor(settings)
    for name in reversed(_service_names(settings)):
        if sup.stop(name):
            console.print(f"stopped {name}")
    console.print("all services are down")


def _operated(settings: Settings, name: str) -> Service:
    """The service ``stop``/``start``/``restart`` act on, or exit 2 naming the choices."""
    services = {s.name: s for s in platform_services(settings, True, DEMO_RATE)}
    if name not in services:
        console.print(f"[red]no service {name!r}[/red]; one of: {', '.join(services)}")
        raise typer.Exit(2)
    return services[name]


ServiceArg = Annotated[str, typer.Argument(help="a service, as `status` names it")]


@app.command()
def stop(service: ServiceArg) -> None:
    """Stop one service and keep it down (the keeper does not restart it) until ``start`` or
    ``up``, as ``docker compose stop`` does."""
    settings = get_settings()
    sup = _supervisor(settings)
    name = _operated(settings, service).name
    hold(sup, name)
    stopped = sup.stop(name)
    console.print(f"{'stopped' if stopped else 'was not running:'} {name} (held until start)")


@app.command()
def start(service: ServiceArg) -> None:
    """Start one service (stopped, held or down) and wait until it is healthy."""
    settings = get_settings()
    _start(_supervisor(settings), _operated(settings, service), settings)


@app.command()
def restart(service: ServiceArg) -> None:
    """Stop one service cleanly, then start it again and wait until it is healthy."""
    settings = get_settings()
    sup = _supervisor(settings)
    target = _operated(settings, service)
    hold(sup, target.name)  # the keeper must not start it between the two steps
    sup.stop(target.name)
    console.print(f"stopped {target.name}")
    _start(sup, target, settings)


DEPLOY_TIMEOUT_S = 120.0


@app.command()
def deploy(
    demo: Annotated[bool, typer.Option(help="as given to up (DEMO=0 disables)")] = True,
    demo_rate: Annotated[float, typer.Option(help="as given to up")] = DEMO_RATE,
) -> None:
    """Apply the views file (LAMBDA_VIEWS_FILE) to the running platform: check it, restart
    the speed processes and serving on it one by one, and wait until the speed store runs it.
    An invalid file is refused with its reason, and nothing is restarted."""
    settings = get_settings()
    try:
        views = ViewSet.load(settings.views_file)
    except DeclarationError as exc:
        console.print(f"[red]✗ refused[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    sup = _supervisor(settings)
    demo = demo and _demo_enabled()
    services = {s.name: s for s in platform_services(settings, demo, demo_rate)}
    rolled = [n for n in services if n.startswith("speed-") or n == "serving"]
    if not any(sup.pid(name) for name in rolled):
        console.print("[red]✗[/red] the platform is not running: `make up` first")
        raise typer.Exit(1)
    # As up does: the keeper must not restart a service while this restarts it too.
    keeper_was_up = sup.stop("keeper")
    try:
        for name in rolled:  # speed first: the store's deployment changes with the first
            sup.stop(name)
            _start(sup, services[name], settings)
        _wait_deployed(settings, views)
    finally:
        if keeper_was_up:
            _start(sup, keeper_service(demo, demo_rate), settings)
    for declared in views.declared:
        console.print(f"[green]✓ {declared.name}[/green] version {declared.version}")
    console.print(
        f"deployed views file {settings.views_file} ({len(views.declared)} declared views): "
        "new versions build in the background; GET /v1/views shows their state"
    )


def _wait_deployed(settings: Settings, views: ViewSet) -> None:
    """Until the speed store's deployment is ``views``' (its speed processes deploy at start)."""
    engine = make_engine(settings.speed_store_url or "")
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    try:
        # The deployment the speed processes make of it: the file's versions, and the previous
        # versions of changed views still answering until their successors serve.
        while (found := deployed_fingerprint(engine, settings.topic)) != with_previous(
            views, registered_versions(engine)
        ).fingerprint:
            if time.monotonic() > deadline:
                console.print(
                    f"[red]✗[/red] the speed store still runs deployment {found} after "
                    f"{DEPLOY_TIMEOUT_S:.0f} s (expected {views.fingerprint}): see the speed logs"
                )
                raise typer.Exit(1)
            time.sleep(0.5)
    finally:
        engine.dispose()


@app.command("admin-password")
def show_admin_password() -> None:
    """Print the Airflow UI's admin password (generated at first start, kept mode 0600).

    In docker compose: ``docker compose exec airflow-apiserver lambda-platform admin-password``.
    """
    settings = get_settings()
    console.print(admin_password(settings), highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def airflow(ctx: typer.Context) -> None:
    """Run an ``airflow`` command with the platform's Airflow configuration (e.g. ``dags list``),
    in place of this process.

    Variables already set in the environment win, so docker compose can run each Airflow
    component through this command with its own database and host settings.
    """
    settings = get_settings()
    env = airflow_process_env(settings, ctx.args[0] if ctx.args else "")
    # exec, not a child: Airflow becomes this process, so the SIGTERM of docker stop (or of a
    # supervisor) reaches the scheduler or API server itself, which then stops its tasks.
    os.execvpe("airflow", ["airflow", *ctx.args], env)


def airflow_process_env(settings: Settings, component: str = "") -> dict[str, str]:
    """The environment of an Airflow command: the platform's Airflow configuration, the JWT
    secret's command for the components that need it, then the variables already set (which
    win, so compose and a cluster host give their own database and addresses), and this
    Python's ``bin`` first on PATH (Airflow spawns its parts by the bare name ``airflow``)."""
    env = {**airflow_env(settings), **jwt_env(settings, component), **os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


@app.command("airflow-upkeep")
def airflow_upkeep(
    once: Annotated[bool, typer.Option(help="one pass, then exit (a cron job)")] = False,
) -> None:
    """Delete Airflow's task logs and run records older than LAMBDA_AIRFLOW_RETENTION_DAYS,
    every LAMBDA_AIRFLOW_UPKEEP_INTERVAL_S until SIGTERM (or once)."""
    settings = get_settings()
    env = airflow_process_env(settings)
    if once:
        try:
            done = upkeep.upkeep_once(settings, env)
        except subprocess.CalledProcessError as exc:
            tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:]
            _error(f"airflow db clean failed ({exc.returncode}): {' '.join(tail)}")
            raise typer.Exit(1) from exc
        console.print(f"deleted {done.logs_deleted} log files and the run records before "
                      f"{done.before.isoformat()}")  # fmt: skip
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    upkeep.run(settings, env, stop)


@app.command()
def status() -> None:
    """Show each service, its pid, its health and how often the keeper restarted it."""
    settings = get_settings()
    sup = _supervisor(settings)
    table = Table("service", "pid", "health", "restarts", "log")
    known = {s.name: s for s in platform_services(settings, True, 0)}
    any_running = any_unhealthy = False
    for name in _service_names(settings):
        pid = sup.pid(name)
        service = known.get(name)
        if pid is None and service is None and name != "keeper":
            continue
        if pid is None and is_held(sup, name):
            health = f"stopped (lambda-platform start {name})"  # as the operator wants
        elif pid is None:
            exited = read_record(sup, name).last_exit
            health = "down (configuration error: see its log)" if exited == EXIT_CONFIG else "down"
            any_unhealthy = any_unhealthy or name != "producer"
        else:
            any_running = True
            health = _health(settings, name, service)
            any_unhealthy = any_unhealthy or not health.startswith("healthy")
        restarts = read_record(sup, name).restarts
        table.add_row(name, str(pid or "-"), health, str(restarts), str(sup.log_file(name)))
    console.print(table)
    if not any_running:
        sys.exit(3)
    if any_unhealthy:
        sys.exit(1)


def _health(settings: Settings, name: str, service: object) -> str:
    """One cell of ``status``: speed processes say how long they are stalled and how far
    behind, or why a partition is halted."""
    if name.startswith("speed-"):
        return speed_health_cell(speed_health(settings, int(name.split("-", 1)[1])))
    healthy = getattr(service, "healthy", None)
    return "healthy" if healthy is None or healthy() else "unhealthy"


def _start(sup: Supervisor, service: Service, settings: Settings) -> None:
    """Start one service unless it runs; print what happened; exit 1 if it cannot start. A
    service an operator stopped is released: the keeper looks after it again."""
    release(sup, service.name)
    already = sup.pid(service.name)
    if service.name == S3_SERVICE and already is None and service.healthy():
        console.print(
            f"[green]✓ {service.name}[/green] served by another process at "
            f"{settings.s3_endpoint}: using it"
        )
        return
    try:
        pid = sup.start(service)
    except (ServiceError, TopicMismatchError) as exc:
        console.print(f"[red]✗ {service.name}[/red]: {exc}")
        raise typer.Exit(1) from exc
    state = "already running" if already else "started"
    console.print(f"[green]✓ {service.name}[/green] {state} (pid {pid})")


def _print_where(settings: Settings, show_password: bool) -> None:
    """Where everything is. The Airflow password only at the first start (it lands in
    terminals' scrollback and CI logs): later, ``lambda-platform admin-password`` shows it."""
    layout = Layout.of(settings)
    password = (
        f"password {admin_password(settings)}"
        if show_password
        else "password: lambda-platform admin-password"
    )
    console.print(
        f"""
[bold]Lambda platform is up[/bold]
  Kafka bootstrap : {settings.kafka_bootstrap}  (topics {settings.topic}, {settings.dlq_topic})
  Speed metrics   : http://127.0.0.1:{settings.speed_metrics_port}/metrics (+1 per process)
  Speed store     : {settings.speed_store_url_masked}
  Serving API     : http://{settings.api_host}:{settings.api_port}/v1/...  docs /docs, dashboard /
  Airflow UI      : http://{API_HOST}:{AIRFLOW_PORT} user admin, {password}
                    (kept in {password_file(settings)}, mode 0600)
  Data directory  : {layout.data_dir}
  Master dataset  : {layout.store.describe()}
  Logs            : {settings.logs_dir}
  Status / stop   : make status  |  make down
"""
    )
    if settings.prometheus_enabled:
        console.print(
            f"  Prometheus      : http://127.0.0.1:{settings.prometheus_port}  (alerts "
            f"/alerts; configuration {settings.data_dir / 'prometheus' / 'prometheus.yml'})\n"
        )


if __name__ == "__main__":
    app()
