"""Run a test command over and over and report how many runs passed in a row.

A flaky suite shows up only under repetition, so this is how issue 13's "passes N times in a
row" figures are measured. Two modes:

- ``--pytest ARGS``: repeat ``pytest ARGS`` in this checkout (e.g. the speed-layer
  integration modules), 30 times by default;
- ``--fresh-clone``: each run clones this repository's HEAD into a new temporary directory and
  runs ``CI=true bash .ci/run`` there, exactly what CI does on a fresh checkout.

It stops at the first failure (a run of passes "in a row" ends there) unless
``--keep-going``. Each run's last lines go to ``bench/results/repeat_tests/``; the summary to
``bench/results/repeat_tests.json``.

    python -m bench.repeat_tests --runs 30 --pytest "tests/integration/test_speed_exactness.py"
    python -m bench.repeat_tests --runs 5 --fresh-clone
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from bench.common import RESULTS, write_report

app = typer.Typer(add_completion=False)
REPO = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"^=+ (.*(passed|failed|error).*) =+$", re.MULTILINE)


def _summary_line(output: str) -> str:
    """pytest's closing ``N passed in S`` line, or the last line when there is none."""
    found = SUMMARY.findall(output)
    if found:
        return found[-1][0]
    lines = output.strip().splitlines()
    return lines[-1] if lines else "(no output)"


def _run_pytest(args: str, log: Path) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *shlex.split(args)]
    with log.open("w") as out:
        rc = subprocess.call(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    return rc, _summary_line(log.read_text(errors="replace"))


def _run_fresh_clone(log: Path) -> tuple[int, str, str]:
    """Clone HEAD (committed work only, as CI sees it) and run ``.ci/run`` in it."""
    head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True)
    clone = Path(tempfile.mkdtemp(prefix="lambda-fresh-clone-"))
    try:
        subprocess.check_call(["git", "clone", "-q", str(REPO), str(clone)])
        env = {**os.environ, "CI": "true"}
        env.pop("VIRTUAL_ENV", None)
        with log.open("w") as out:
            rc = subprocess.call(
                ["bash", ".ci/run"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT
            )
    finally:
        shutil.rmtree(clone, ignore_errors=True)
    return rc, _summary_line(log.read_text(errors="replace")), head.strip()


def _report(pytest_args: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r["run"] for r in results if r["rc"] != 0]
    return {
        "mode": f"pytest {pytest_args}" if pytest_args else "fresh-clone",
        "runs_done": len(results),
        "passed": len(results) - len(failed),
        "passed_in_a_row": failed[0] - 1 if failed else len(results),
        "failed_runs": failed,
        "runs": results,
    }


@app.command()
def main(
    runs: Annotated[int, typer.Option(help="how many runs")] = 30,
    pytest_args: Annotated[str, typer.Option("--pytest", help="arguments for pytest")] = "",
    fresh_clone: Annotated[bool, typer.Option(help="clone HEAD and run .ci/run each time")] = False,
    keep_going: Annotated[bool, typer.Option(help="do not stop at the first failure")] = False,
    name: Annotated[str, typer.Option(help="report name under bench/results")] = "repeat_tests",
) -> None:
    if fresh_clone == bool(pytest_args):
        raise typer.BadParameter("give exactly one of --pytest ARGS or --fresh-clone")
    logs = RESULTS / name
    logs.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for i in range(1, runs + 1):
        log = logs / f"run-{i:02d}.log"
        started = time.monotonic()
        if fresh_clone:
            rc, summary, head = _run_fresh_clone(log)
        else:
            rc, summary = _run_pytest(pytest_args, log)
            head = ""
        seconds = round(time.monotonic() - started)
        results.append({"run": i, "rc": rc, "seconds": seconds, "summary": summary, "head": head})
        print(f"run {i}/{runs} {head} rc={rc} {seconds}s: {summary}", flush=True)
        # Kept after every run: a loop stopped midway still leaves its figures.
        (RESULTS / f"{name}.json").write_text(json.dumps(_report(pytest_args, results), indent=1))
        if rc != 0 and not keep_going:
            break
    report = _report(pytest_args, results)
    print(f"passed {report['passed_in_a_row']} in a row of {len(results)} run(s)")
    write_report(name, report)
    raise typer.Exit(0 if all(r["rc"] == 0 for r in results) else 1)


if __name__ == "__main__":
    app()
