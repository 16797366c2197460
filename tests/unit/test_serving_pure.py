"""Serving's pure parts: the merge, roll-ups, time parsing, exact money."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_contracts.views import ACCOUNT_MINUTE, GLOBAL_MINUTE
from serving.merge import merge_rows, roll_up, total
from serving.schemas import average, money
from serving.timeparse import parse_instant


def test_merge_combines_the_same_key_from_both_sides() -> None:
    batch = [(("A", 60_000), (2, 300, 100, 200)), (("B", 60_000), (1, 5, 5, 5))]
    speed = [(("A", 60_000), (1, 50, 50, 50)), (("A", 120_000), (1, 7, 7, 7))]
    merged = merge_rows(ACCOUNT_MINUTE, batch, speed)
    assert merged == {
        ("A", 60_000): (3, 350, 50, 200),
        ("B", 60_000): (1, 5, 5, 5),
        ("A", 120_000): (1, 7, 7, 7),
    }
    # Order of sides does not matter (a monoid merge).
    assert merge_rows(ACCOUNT_MINUTE, speed, batch) == merged


def test_roll_up_to_hours_and_total() -> None:
    minutes = {(0,): (1, 10, 10, 10), (60_000,): (2, 30, 5, 25), (3_600_000,): (1, 1, 1, 1)}
    hours = roll_up(GLOBAL_MINUTE, minutes, lambda k: (k[0] - k[0] % 3_600_000,))
    assert hours == {(0,): (3, 40, 5, 25), (3_600_000,): (1, 1, 1, 1)}
    assert total(GLOBAL_MINUTE, hours.values()) == (4, 41, 1, 25)
    assert total(GLOBAL_MINUTE, []) is None


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1550149860000", 1550149860000),
        ("2019-02-14T13:11:00Z", 1550149860000),
        ("2019-02-14T14:11:00+01:00", 1550149860000),
        ("2019-02-14T13:11:00", 1550149860000),  # naive is UTC
        ("2019-02-14T13:11:00.250Z", 1550149860250),
    ],
)
def test_parse_instant(text: str, ms: int) -> None:
    assert parse_instant(text, "start") == ms


@pytest.mark.parametrize("text", ["yesterday", "2019-13-01", "", "12:00"])
def test_parse_instant_rejects_with_the_parameter_name(text: str) -> None:
    with pytest.raises(ValueError, match=r"^start: "):
        parse_instant(text, "start")


def test_money_and_average_are_exact() -> None:
    assert money(30) == "0.30"
    assert money(300010) == "3000.10"
    assert money(0) == "0.00"
    assert money(-5) == "-0.05"
    assert money(None) is None
    # 10 + 10 + 10.01 = 30.01 over 3 = 10.003333 -> 10.00 (half-even to the cent)
    assert average(3001, 3) == "10.00"
    assert average(5, 2) == "0.02"  # 0.025 -> 0.02 half-even
    assert average(15, 2) == "0.08"  # 0.075 -> 0.08 half-even
    assert average(0, 0) is None


@given(cents=st.integers(-(10**20), 10**20), count=st.integers(1, 10**12))
def test_money_and_average_agree_with_decimal_arithmetic(cents: int, count: int) -> None:
    """The integer formatting against Decimal (exact at this precision) as the oracle."""
    with localcontext() as ctx:
        ctx.prec = 60
        assert money(cents) == f"{Decimal(cents).scaleb(-2):.2f}"
        cents = abs(cents)  # amounts are never negative (contract): nor are sums and averages
        expected = (Decimal(cents) / Decimal(count) / 100).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_EVEN
        )
        assert average(cents, count) == f"{expected:.2f}"
