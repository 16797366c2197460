"""``lambda-batch``: run a batch recompute by hand, list versions, roll back.

In local mode Airflow runs the same steps on a schedule (``dags/lambda_batch.py``); this CLI is
for operators and tests.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from batch_layer.pipeline import NothingToDo, run_once
from batch_layer.versions import list_versions, new_version_id, read_manifest, rollback
from lambda_contracts.buckets import ms_to_iso
from lambda_contracts.layout import Layout
from lambda_contracts.settings import get_settings

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
console = Console()


@app.command()
def run(
    horizon: Annotated[int | None, typer.Option(help="horizon in ms (default: watermark)")] = None,
) -> None:
    """Recompute, validate, publish, expire and prune — once."""
    settings = get_settings()
    run_id = f"manual_{uuid.uuid4().hex[:8]}"
    try:
        report = run_once(settings, new_version_id(run_id), run_id, horizon)
    except NothingToDo as exc:
        console.print(f"nothing to do: {exc}")
        raise typer.Exit(0) from exc
    console.print_json(json.dumps(report))


@app.command("list")
def list_cmd() -> None:
    """Versions on disk, newest last; the CURRENT one is marked."""
    layout = Layout(get_settings().data_dir)
    current = layout.read_current()
    table = Table("", "version", "horizon", "events", "duplicates removed")
    for version in list_versions(layout):
        m = read_manifest(layout, version)
        mark = "*" if current and current.version == version else ""
        table.add_row(
            mark,
            version,
            ms_to_iso(m["horizon_ms"]),
            str(m["events"]),
            str(m["duplicates_removed"]),
        )
    console.print(table)


@app.command("rollback")
def rollback_cmd(
    to: Annotated[str | None, typer.Option(help="version (default: the previous one)")] = None,
) -> None:
    """Point CURRENT back at an earlier version."""
    pointer = rollback(Layout(get_settings().data_dir), to)
    console.print(f"CURRENT is now {pointer.version} (horizon {ms_to_iso(pointer.horizon_ms)})")


if __name__ == "__main__":
    app()
