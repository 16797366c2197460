"""Building a new view version over the master dataset, against a full rebuild, side by side.

    .venv/bin/python -m bench.view_build [--events 10000000] [--runs 2] [--landing-dir DIR]

Issue 27's target: the build of a new view version over 10M events of history at most 1.5 times
a full rebuild of an existing view of the same shape. On one synthetic landing zone (the
layout and format the speed layer writes, ``bench.synthetic``), alternately:

- **rebuild**: ``lambda_rebuild``'s full run of the built-in views (``account_minute`` among
  them), timed as the wall time of ``spark-submit``;
- **build**: the scheduled run after ``sent_minute`` — the shape of ``account_minute``: per
  source account per minute, count, sum, min, max — is deployed: an incremental run on the
  rebuild's published version, which lacks the new view, so the job runs it in full
  (``incremental_base``), as the platform does after ``make deploy``.

The new view's rows are then compared with ``account_minute``'s, row for row: the same
question asked twice must get the same answer. Figures: ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from batch_layer.pipeline import publish_version, recompute
from batch_layer.validate import validate_version
from bench.common import Timer, same_parquet_rows, write_report
from bench.synthetic import write_landing
from lambda_contracts.batch_files import view_files
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.view_set import ViewSet
from lambda_contracts.views import ACCOUNT_MINUTE

BUCKET_MS = 300_000
START = 1_795_000_000_000
SPAN = 2 * 86_400_000
VIEWS_FILE = """\
[[views]]
name = "sent_minute"
dimensions = ["SourceAccountID"]
window = "minute"
measures = ["count", "sum", "min", "max"]
"""


def same_rows(layout: Layout, version: str, views: ViewSet) -> bool:
    """``sent_minute``'s totals and ``account_minute``'s in ``version``, row for row."""
    (declared,) = views.declared
    sides = []
    for view in (declared.totals, ACCOUNT_MINUTE):
        files = [layout.store.path(k) for k in view_files(layout, version, view.name)]
        sides.append((files, ", ".join([*view.key_columns, *view.measure_names])))
    return same_parquet_rows(*sides)


def timed_pair(settings: Settings, built_in: Settings, horizon: int, run: int) -> dict:
    """A full rebuild of the built-in views (published), then the new version's build on it."""
    layout = Layout.of(settings)
    base = f"rebuild{run}"
    with Timer() as rebuild:
        recompute(built_in, horizon, base, "bench", full=True)
    validate_version(layout, base)
    publish_version(built_in, base)
    new = f"build{run}"
    with Timer() as build:
        recompute(settings, horizon + BUCKET_MS, new, "bench")  # incremental: it goes full
    manifest = layout.read_manifest(new)
    assert manifest is not None
    views = ViewSet.load(settings.views_file)
    identical = same_rows(layout, new, views)
    base_steps = layout.read_manifest(base).steps_s  # type: ignore[union-attr]
    return {
        "rebuild_s": round(rebuild.seconds, 2),
        "build_s": round(build.seconds, 2),
        "ratio": round(build.seconds / rebuild.seconds, 3),
        "build_mode": manifest.mode,
        "new_view_rows_equal_account_minute": identical,
        "rebuild_steps_s": base_steps,
        "build_steps_s": manifest.steps_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=2, help="pairs, rebuild then build")
    parser.add_argument("--landing-dir", type=Path, help="keep and reuse the landing zone here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lambda-bench-build-") as tmp:
        data_dir = (args.landing_dir or Path(tmp)) / f"n{args.events}"
        views_file = Path(tmp) / "views.toml"
        views_file.write_text(VIEWS_FILE)
        built_in = Settings(data_dir=data_dir, bucket_ms=BUCKET_MS, views_file=Path(tmp) / "none")
        settings = built_in.model_copy(update={"views_file": views_file})
        layout = Layout.of(settings)
        ready = data_dir / "landing-complete"
        if not ready.exists():
            shutil.rmtree(data_dir, ignore_errors=True)
            write_landing(layout, args.events, START, SPAN, settings.partitions, BUCKET_MS)
            ready.touch()
        end = START + SPAN
        horizon = end - end % BUCKET_MS + BUCKET_MS  # on a bucket boundary, above every event
        for leftover in ("batch", "speed"):  # an earlier run's versions and registry
            shutil.rmtree(data_dir / leftover, ignore_errors=True)
        pairs = []
        for run in range(args.runs):
            pairs.append(timed_pair(settings, built_in, horizon + run * 2 * BUCKET_MS, run))
            print({k: v for k, v in pairs[-1].items() if "steps" not in k}, flush=True)
    summary = {
        "rebuild_s": statistics.median(p["rebuild_s"] for p in pairs),
        "build_s": statistics.median(p["build_s"] for p in pairs),
        "median_ratio": statistics.median(p["ratio"] for p in pairs),
        "target": "build <= 1.5 x rebuild",
        "all_identical": all(p["new_view_rows_equal_account_minute"] for p in pairs),
    }
    print(summary, flush=True)
    write_report(
        "view_build",
        {
            "command": f"python -m bench.view_build --events {args.events} --runs {args.runs}",
            "events": args.events,
            "summary": summary,
            "pairs": pairs,
        },
    )


if __name__ == "__main__":
    main()
