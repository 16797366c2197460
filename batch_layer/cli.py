"""``lambda-batch``: run a batch recompute by hand, list versions, roll back and resume.

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

from batch_layer.catalog import VersionError, is_validated, list_versions, read_manifest
from batch_layer.horizon import HorizonError
from batch_layer.pipeline import NothingToDo, run_once
from batch_layer.retention import rollback_reach
from batch_layer.validate import ValidationFailed, validate_version
from batch_layer.versions import new_version_id, resume, rollback
from lambda_contracts.buckets import ms_to_iso
from lambda_contracts.layout import Layout
from lambda_contracts.settings import get_settings

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
console = Console()


@app.command()
def compact(
    below: Annotated[
        int | None, typer.Option(help="compact buckets below this ms (default: published horizon)")
    ] = None,
) -> None:
    """Rewrite sealed landing buckets as one file per (bucket, partition)."""
    from batch_layer.compaction import compact as compact_landing

    layout = Layout.of(get_settings())
    current = layout.read_current()
    limit = below if below is not None else (current.horizon_ms if current else 0)
    watermark = layout.landing_watermark(get_settings().partitions, get_settings().bucket_ms)
    if limit > watermark:
        console.print(f"[red]{limit} is above the landing watermark {watermark}: not sealed[/red]")
        raise typer.Exit(2)
    done = compact_landing(layout, below_ms=limit)
    console.print(
        f"{done.buckets} buckets below {ms_to_iso(limit) if limit else 0}: "
        f"{done.files_before} files -> {done.files_after}; deleted {done.deleted}, "
        f"kept {done.kept_for_readers} for readers"
    )


@app.command()
def run(
    horizon: Annotated[int | None, typer.Option(help="horizon in ms (default: watermark)")] = None,
    rebuild: Annotated[
        bool,
        typer.Option(
            help="a full recompute from the whole landing zone (the audit of incremental runs);"
            " allows the published horizon again, or an older one"
        ),
    ] = False,
) -> None:
    """Recompute (incremental: the new buckets onto the published version), validate, publish,
    expire and prune — once."""
    settings = get_settings()
    run_id = f"manual_{uuid.uuid4().hex[:8]}"
    try:
        report = run_once(settings, new_version_id(run_id), run_id, horizon, rebuild)
    except NothingToDo as exc:
        console.print(f"nothing to do: {exc}")
        raise typer.Exit(0) from exc
    except HorizonError as exc:
        console.print(f"[red]bad horizon[/red]: {exc}")
        raise typer.Exit(2) from exc
    console.print_json(json.dumps(report))


@app.command("list")
def list_cmd() -> None:
    """Versions on disk, newest last; the CURRENT one is marked, and whether a rollback can
    reach each (its speed rows not expired, not being pruned)."""
    layout = Layout.of(get_settings())
    current = layout.read_current()
    reach = rollback_reach(layout)
    table = Table(
        "",
        "version",
        "validated",
        "horizon",
        "events",
        "duplicates removed",
        "run",
        "days touched",
        "rollback",
    )
    for version in list_versions(layout):
        m = read_manifest(layout, version)
        mark = ""
        if current and current.version == version:
            mark = "* pinned" if current.pinned else "*"
        table.add_row(
            mark,
            version,
            "yes" if is_validated(m) else "no",
            ms_to_iso(m.horizon_ms),
            str(m.events),
            str(m.duplicates_removed),
            m.mode,
            str(m.increment.days_touched) if m.increment else "",
            _reach(reach.get(version)),
        )
    console.print(table)


def _reach(why: str | None) -> str:
    """The list's rollback column: yes, "-" for CURRENT, or no and why."""
    if why is None:
        return "yes"
    return "-" if why == "CURRENT" else f"no: {why}"


@app.command("rollback")
def rollback_cmd(
    to: Annotated[
        str | None,
        typer.Option(help="version (default: the newest earlier one it can reach exactly)"),
    ] = None,
) -> None:
    """Point CURRENT back at an earlier validated version and pin it there, or refuse (and
    leave CURRENT as it was) when the answers on it would not be exact."""
    try:
        pointer = rollback(Layout.of(get_settings()), to)
    except VersionError as exc:
        console.print(f"[red]rollback refused[/red]: {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"CURRENT is now {pointer.version} (horizon {ms_to_iso(pointer.horizon_ms)}), pinned: "
        "runs will not publish until `lambda-batch resume`"
    )


@app.command("resume")
def resume_cmd() -> None:
    """Unpin CURRENT after a rollback: the next run publishes again."""
    pointer = resume(Layout.of(get_settings()))
    console.print(f"CURRENT {pointer.version if pointer else '(none)'} is not pinned")


@app.command("validate")
def validate_cmd(version: str) -> None:
    """Validate a version and record the verdict in its manifest (e.g. an older version)."""
    try:
        checks = validate_version(Layout.of(get_settings()), version)
    except ValidationFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"{version} is valid: {checks['events']} events")


if __name__ == "__main__":
    app()
