"""The event contract: which records are valid, and the exact reason for each rejection."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from lambda_contracts.events import Rejection, Transaction, parse_event
from tests.support.wire_records import INVALID, VALID, record


@pytest.mark.parametrize(("value", "cents"), VALID)
def test_valid_records_parse_with_exact_cents(value: bytes, cents: int) -> None:
    event = parse_event(value)
    assert isinstance(event, Transaction), event
    assert event.amount_cents == cents


@pytest.mark.parametrize(("value", "reason"), INVALID)
def test_invalid_records_have_a_precise_reason(value: bytes | None, reason: str) -> None:
    assert parse_event(value) == Rejection(reason)


def test_amount_is_parsed_from_the_json_text_not_through_float() -> None:
    # 0.1 + 0.2 in floats is 0.30000000000000004; in cents it is exactly 30.
    values = [parse_event(record(TransactionID=str(i), Amount=a)) for i, a in enumerate([0.1, 0.2])]
    assert sum(v.amount_cents for v in values) == 30  # type: ignore[union-attr]


def test_wire_round_trip_keeps_every_field_and_the_key() -> None:
    event = parse_event(record(Amount=1234.56))
    assert isinstance(event, Transaction)
    again = parse_event(event.to_json_bytes())
    assert again == event
    assert again.amount == Decimal("1234.56")  # type: ignore[union-attr]
    assert event.key == b"131100"
    assert json.loads(event.to_json_bytes())["Amount"] == 1234.56
