"""Raw event values as they come off the topic, valid and invalid: with the cents each valid
one parses to and the exact reason each invalid one is rejected with."""

from __future__ import annotations

import json

BASE = {
    "TransactionID": "100001",
    "CreatedTime": 1550149860000,
    "SourceAccountID": "131100",
    "TargetAccountID": "151837",
    "Amount": 3000,
}


def record(**changes: object) -> bytes:
    """The base record with ``changes`` (a field set to ``...`` is left out), as JSON."""
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
