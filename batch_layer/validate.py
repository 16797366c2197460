"""Check a written version before it is published: its numbers must reconcile.

- every input record was read (Parquet footers == rows Spark counted);
- input - replays - duplicates == events == each view's total count;
- every view's total amount is the same (views differ in keys, not in what they count).
The verdict is recorded in the manifest it checked, by compare-and-swap (a manifest rewritten
meanwhile keeps no verdict): only a validated version can be published or rolled back to.
A failure raises, so the DAG run fails and CURRENT keeps the previous version.
"""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from batch_layer.catalog import read_manifest_versioned
from batch_layer.versions import record_validation
from lambda_contracts.batch_files import read_view
from lambda_contracts.layout import Layout
from lambda_contracts.views import VIEWS


class ValidationFailed(RuntimeError):
    """The version's manifest and views disagree; it must not be published."""


def view_totals(layout: Layout, version: str) -> dict[str, tuple[int, int]]:
    """(sum of counts, sum of amounts) of each view of a version."""
    totals = {}
    for view in VIEWS:
        table = read_view(layout, version, view)
        columns = (view.count_measure.name, view.amount_measure.name)
        count, amount = (pc.sum(table[c]).as_py() or 0 for c in columns)
        totals[view.name] = (int(count), int(amount))
    return totals


def validate_version(layout: Layout, version: str) -> dict[str, Any]:
    """Return a summary of the checks; raise ValidationFailed if any fails."""
    checked = read_manifest_versioned(layout, version)
    m = checked[0]
    problems = []
    if m.input_records != m.records_read:
        problems.append(f"read {m.records_read} of {m.input_records} input records")
    expected = m.expected_events
    if expected != m.events:
        problems.append(f"input - removed = {expected} but {m.events} events")
    totals = view_totals(layout, version)
    for name, (count, _) in totals.items():
        if count != expected:
            problems.append(f"view {name} counts {count} events, expected {expected}")
    if len({amount for _, amount in totals.values()}) > 1:
        problems.append(f"views disagree on the total amount: {totals}")
    if problems:
        record_validation(layout, version, False, {"problems": problems}, checked)
        raise ValidationFailed(f"version {version}: " + "; ".join(problems))
    record_validation(layout, version, True, {"events": expected}, checked)
    return {"version": version, "events": expected, "views": totals}
