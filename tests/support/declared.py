"""Random view declarations, and what a declared view must answer, by plain loops.

The reference shares nothing with the production code: no View, no SQL, no merge. It reads
the declaration's fields as a user wrote them (decimal amounts, wire names).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from lambda_contracts.view_declarations import ViewDeclaration

COLUMNS = {"SourceAccountID": "source_account_id", "TargetAccountID": "target_account_id"}
WINDOW_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
AMOUNTS = ("0", "0.01", "5", "12.50", "20", "49.99")


@st.composite
def declarations(draw: st.DrawFn) -> ViewDeclaration:
    dims = draw(st.lists(st.sampled_from(sorted(COLUMNS)), unique=True, max_size=2))
    plain = ["count", "sum", "min", "max"]
    distinct = [f"distinct({f})" for f in COLUMNS if f not in dims]
    measures = draw(st.lists(st.sampled_from(plain + distinct), unique=True, min_size=1))
    low = draw(st.none() | st.sampled_from(AMOUNTS))
    high = draw(st.none() | st.sampled_from(AMOUNTS))
    if low is not None and high is not None and Decimal(low) > Decimal(high):
        low, high = high, low
    return ViewDeclaration(
        name="v",
        dimensions=tuple(dims),
        window=draw(st.sampled_from(sorted(WINDOW_MS))),
        measures=tuple(measures),
        amount_min=low,
        amount_max=high,
    )


events = st.lists(
    st.fixed_dictionaries(
        {
            "created_time": st.integers(0, 3 * 86_400_000),
            "source_account_id": st.sampled_from(["a", "b", "c"]),
            "target_account_id": st.sampled_from(["a", "x", "y", "z"]),
            "amount_cents": st.sampled_from([0, 1, 499, 500, 1250, 2000, 4999, 5000]),
        }
    ),
    max_size=60,
)


def reference(
    declaration: ViewDeclaration,
    rows: list[dict[str, Any]],
    group_by: tuple[str, ...],
    window_ms: int | None,
) -> dict[tuple, dict[str, int]]:
    """The declared view's rows by plain loops: filter, key, collect, measure."""
    low = None if declaration.amount_min is None else Decimal(declaration.amount_min) * 100
    high = None if declaration.amount_max is None else Decimal(declaration.amount_max) * 100
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if low is not None and row["amount_cents"] < low:
            continue
        if high is not None and row["amount_cents"] > high:
            continue
        key = tuple(row[COLUMNS[d]] for d in group_by)
        if window_ms is not None:
            key += (row["created_time"] - row["created_time"] % window_ms,)
        groups.setdefault(key, []).append(row)
    out = {}
    for key, members in groups.items():
        amounts = [m["amount_cents"] for m in members]
        answer: dict[str, int] = {}
        for measure in declaration.measures:
            if measure == "count":
                answer["count"] = len(members)
            elif measure == "sum":
                answer["sum"] = sum(amounts)
            elif measure == "min":
                answer["min"] = min(amounts)
            elif measure == "max":
                answer["max"] = max(amounts)
            else:
                field = measure[len("distinct(") : -1]
                answer[f"distinct_{field}"] = len({m[COLUMNS[field]] for m in members})
        out[key] = answer
    return out


def rendered(declared_measures: tuple[str, ...], row: dict[str, int]) -> dict[str, Any]:
    """The reference's integers as the API renders them (money as decimal strings)."""
    out: dict[str, Any] = {}
    for measure in declared_measures:
        label = measure if "(" not in measure else f"distinct_{measure[9:-1]}"
        value = row[label]
        out[label] = f"{Decimal(value) / 100:.2f}" if label in ("sum", "min", "max") else value
    return out
