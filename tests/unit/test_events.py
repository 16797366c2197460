"""The event contract: which records are valid, and the exact reason for each rejection."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from lambda_contracts.events import Rejection, Transaction, parse_event

BASE = {
    "TransactionID": "100001",
    "CreatedTime": 1550149860000,
    "SourceAccountID": "131100",
    "TargetAccountID": "151837",
    "Amount": 3000,
}


def record(**changes: object) -> bytes:
    obj = {k: v for k, v in {**BASE, **changes}.items() if v is not ...}
    return json.dumps(obj).encode()


VALID = [
    (record(), 300000),
    (record(Amount=0), 0),
    (record(Amount=12.5), 1250),
    (record(Amount=0.01), 1),
    (
        b'{"TransactionID":"1","CreatedTime":0,"SourceAccountID":"a","TargetAccountID":"b",'
        b'"Amount":19.99}',
        1999,
    ),
    (record(Extra="ignored", Nested={"a": 1}), 300000),
]

INVALID = [
    (record(TransactionID=...), "TransactionID: is required"),
    (record(CreatedTime=...), "CreatedTime: is required"),
    (record(SourceAccountID=...), "SourceAccountID: is required"),
    (record(TargetAccountID=...), "TargetAccountID: is required"),
    (record(Amount=...), "Amount: is required"),
    (record(TransactionID=""), "TransactionID: String should have at least 1 character"),
    (record(TransactionID="   "), "TransactionID: String should have at least 1 character"),
    (record(TransactionID=100001), "TransactionID: Input should be a valid string"),
    (record(SourceAccountID=""), "SourceAccountID: String should have at least 1 character"),
    (record(TargetAccountID=5), "TargetAccountID: Input should be a valid string"),
    (record(TransactionID="x" * 129), "TransactionID: String should have at most 128 characters"),
    (
        record(SourceAccountID="a" * 256),
        "SourceAccountID: String should have at most 128 characters",
    ),
    (
        record(TransactionID="a\u0000b"),
        "TransactionID: must not contain control characters (U+0000 at position 1)",
    ),
    (
        record(TargetAccountID="line\nbreak"),
        "TargetAccountID: must not contain control characters (U+000A at position 4)",
    ),
    (record(CreatedTime="2019-02-14"), "CreatedTime: Input should be a valid integer"),
    (record(CreatedTime=1550149860000.5), "CreatedTime: Input should be a valid integer"),
    (record(CreatedTime=True), "CreatedTime: Input should be a valid integer"),
    (record(CreatedTime=-1), "CreatedTime: Input should be greater than or equal to 0"),
    (record(Amount=-0.01), "Amount: Input should be greater than or equal to 0"),
    (record(Amount=1.005), "Amount: Decimal input should have no more than 2 decimal places"),
    (record(Amount="30.00"), "Amount: must be a JSON number"),
    (record(Amount=True), "Amount: must be a JSON number"),
    (record(Amount=None), "Amount: must be a JSON number"),
    (record(Amount=10**13), "Amount: Input should be less than or equal to 10000000"),
    (b"[1,2]", "value: must be a JSON object, got list"),
    (b'"text"', "value: must be a JSON object, got str"),
    (
        b"{not json",
        "value: is not valid JSON (Expecting property name enclosed in double quotes "
        "at position 1)",
    ),
    (b"\xff\xfe", "value: is not valid UTF-8 (invalid start byte at byte 0)"),
    (None, "value: is empty (tombstone)"),
]


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
