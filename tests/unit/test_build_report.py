"""A batch run's report of its declared views' builds: each version the run holds, in the state
serving gives it (states written out by hand for each case)."""

from __future__ import annotations

import json
from typing import Any

from batch_layer.build_report import declared_builds, describe
from lambda_contracts.manifest import Manifest

H = 1_800_000_000_000


def row(name: str, version: str, newest_ts: int, retired: bool = False) -> dict[str, Any]:
    return {
        "storage_name": f"uv_{name}",
        "view_name": name,
        "version": version,
        "from_positions": json.dumps({"0": [10, newest_ts], "1": [4, newest_ts - 1]}),
        "retired_at_ms": H if retired else None,
    }


def test_each_declared_version_is_reported_in_the_state_serving_gives_it() -> None:
    manifest = Manifest(
        version="v1",
        horizon_ms=H,
        declared_views={"served": "a", "undeployed": "b", "behind": "c", "other": "d"},
        output_files={"uv_served": ["f"], "uv_behind": ["g"], "uv_other": ["h"]},
    )
    registered = [
        row("served", "a", H - 1),
        row("behind", "c", H),  # the deploy's newest record is not below the horizon yet
        row("other", "older", H - 1),  # another version of the view: not this run's
        row("gone", "e", 0, retired=True),
    ]
    report = {b["view"]: b for b in declared_builds(manifest, registered)}
    assert list(report) == ["behind", "other", "served", "undeployed"]
    assert (report["served"]["state"], report["served"]["progress"]) == ("serving", 1.0)
    assert report["undeployed"]["state"] == "building"
    assert "deploy" in report["undeployed"]["waiting_for"]
    assert report["behind"]["state"] == "building"
    assert "partitions 0" in report["behind"]["waiting_for"]
    assert report["other"]["state"] == "building"  # version d was never deployed
    assert describe(report["served"]) == "declared view served (version a): serving, 100%"


def test_a_run_without_declared_views_reports_none() -> None:
    assert declared_builds(Manifest(version="v", horizon_ms=H), [row("x", "1", 0)]) == []
