"""``/v1/top-accounts`` ranks exactly without moving every account out of DuckDB: against a
plain ranking of the events an answer covers, on either version, by sum and by count, at
every limit; the batch side returns only the rows that can still rank first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from serving.queries import QueryService
from tests.support.two_versions import ACCOUNTS, RANGES, oracle, publish, served_versions, switched


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Settings, QueryService]]:
    with served_versions(tmp_path) as both:
        yield both


def plain_ranking(version: str, start: int, end: int, by_sum: bool) -> list[tuple[str, int, int]]:
    per: dict[str, list[int]] = {}
    for e in oracle(version, start, end, None):
        totals = per.setdefault(e.account, [0, 0])
        totals[0] += 1
        totals[1] += e.cents
    ranked = sorted(per.items(), key=lambda kv: (-kv[1][1 if by_sum else 0], kv[0]))
    return [(account, count, cents) for account, (count, cents) in ranked]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_top_accounts_equal_a_plain_ranking_at_every_limit(served, version: str) -> None:  # type: ignore[no-untyped-def]
    settings, queries = served
    publish(Layout.of(settings), version)
    switched(queries, version)
    fetched: list[int] = []
    top_rows = queries.batch.top_rows

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        rows = top_rows(*args, **kwargs)
        fetched.append(len(rows))
        return rows

    queries.batch.top_rows = counting  # type: ignore[method-assign]
    for start, end in RANGES:
        for by_sum in (True, False):
            want = plain_ranking(version, start, end, by_sum)
            for limit in range(1, len(ACCOUNTS) + 2):
                snap, ranked = queries.consistent(
                    lambda s, a=(start, end, by_sum, limit): queries.top_accounts(s, *a)
                )
                got = [(a, v["count"], v["sum"]) for a, v in ranked]
                assert got == want[:limit], (start, end, by_sum, limit)
                covered = len(oracle(version, start, end, None))
                assert snap.batch_events + snap.speed_events == covered
    if version == "v2":  # on v1 (an early horizon) the speed side touches every account
        assert min(fetched) < len(ACCOUNTS), "some answers need fewer batch rows than accounts"
