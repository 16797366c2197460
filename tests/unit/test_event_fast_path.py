"""The speed layer's fast validation paths and the pydantic contract are one rule.

``event_row`` answers plainly valid records itself and asks the contract about all others;
``plain_event_columns`` answers for a whole poll batch of plainly valid records at once.
The oracle here is the contract (``parse_event``): on random and adversarial inputs the fast
path never accepts a record the contract rejects, accepts with exactly the contract's values,
and every rejection carries the contract's reason.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from lambda_contracts.events import (
    FAST_PATH_MAX_BYTES,
    ID_MAX_LENGTH,
    MAX_AMOUNT,
    MAX_CREATED_TIME_MS,
    Rejection,
    Transaction,
    event_row,
    fast_event_row,
    parse_event,
    plain_event_columns,
)
from tests.support.wire_records import INVALID, VALID

WIRE_NAMES = ("TransactionID", "CreatedTime", "SourceAccountID", "TargetAccountID", "Amount")
PYTHON_NAMES = (
    "transaction_id",
    "created_time",
    "source_account_id",
    "target_account_id",
    "amount",
)


def contract_row(value: bytes | None) -> dict[str, Any] | Rejection:
    parsed = parse_event(value)
    return parsed if isinstance(parsed, Rejection) else parsed.to_row()


def assert_one_rule(value: bytes | None) -> str:
    """Check the two paths agree on ``value``; return which way it went (for statistics)."""
    expected = contract_row(value)
    fast = fast_event_row(value)
    if fast is not None:  # the fast path decided alone: the contract must agree exactly
        assert not isinstance(expected, Rejection), (value, expected)
        assert fast == expected
    assert event_row(value) == expected
    outcome = "rejected" if isinstance(expected, Rejection) else "valid"
    return f"{outcome}, fast path {'decided' if fast is not None else 'asked the contract'}"


# --- JSON literals, written as text so that the decoder sees exactly what a producer sent ----
def dumps(value: Any, ensure_ascii: bool = True) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii)


ADVERSARIAL_NUMBERS = [
    "0", "-0", "0.0", "-0.0", "-0.00", "0.00", "0.001", "0.010", "1.230", "1.2300", "1e2",
    "1E2", "1e+2", "1e-2", "1.5e1", "12.345e1", "0e-1000", "0E+1000", "1e400", "1e-400",
    "10000000", "10000000.00", "10000000.001", "10000000.01", "10000001", "9999999.99",
    "99999999999999999999", "1" + "0" * 30, "1" + "0" * 5000, "NaN", "Infinity", "-Infinity",
    "0.1000000000000000055", "3000.10", "-1", "-0.01", "1.0e0", "5e-1", "1.", ".5", "01",
    "+1", "0x10", "1_000", "true", "false", "null", '"30.00"', '"3000"', "[]", "{}", "[1]",
]  # fmt: skip


def json_number() -> st.SearchStrategy[str]:
    """JSON number literals: plain, with fractions and exponents, signs, huge and tiny."""
    integer = st.integers(min_value=-(10**25), max_value=10**25).map(str)
    fraction = st.tuples(st.integers(0, 10**9), st.text("0123456789", min_size=1, max_size=6)).map(
        lambda t: f"{t[0]}.{t[1]}"
    )
    exponent = st.tuples(
        st.one_of(integer, fraction), st.sampled_from("eE"), st.sampled_from(["", "+", "-"]),
        st.integers(0, 500),
    ).map(lambda t: f"{t[0]}{t[1]}{t[2]}{t[3]}")  # fmt: skip
    cents = st.integers(0, MAX_AMOUNT * 100 + 2).map(lambda c: f"{c // 100}.{c % 100:02d}")
    return st.one_of(integer, fraction, exponent, cents, st.sampled_from(ADVERSARIAL_NUMBERS))


SPECIAL_CHARS = "\x00\x01\x09\x0a\x0b\x0c\x0d\x1c\x1f\x20\x7f\x85\xa0\xad\u1680\u2000\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"  # noqa: E501


def identifier() -> st.SearchStrategy[str]:
    """IDs as JSON text: plain, padded, with control and Unicode space characters, long,
    empty, escaped (including lone surrogates), and values of the wrong type."""
    plain = st.text("abc0123456789-_", min_size=1, max_size=12)
    tricky = st.text(
        st.one_of(st.sampled_from(SPECIAL_CHARS), st.characters(), st.sampled_from("ab ")),
        max_size=10,
    )
    long = st.integers(ID_MAX_LENGTH - 2, ID_MAX_LENGTH + 2).map(lambda n: "x" * n)
    as_json = st.tuples(st.one_of(plain, tricky, long), st.booleans()).map(lambda t: dumps(*t))
    surrogate = st.sampled_from(['"\\ud800"', '"a\\udfffb"', '"\\u0000"', '"\\u00a0x"'])
    wrong_type = st.sampled_from(["1", "1.5", "true", "null", "[]", '{"a":"b"}', '["x"]'])
    return st.one_of(as_json, as_json, surrogate, wrong_type)


def created_time() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-5, MAX_CREATED_TIME_MS + 5).map(str),
        st.sampled_from([str(MAX_CREATED_TIME_MS), str(MAX_CREATED_TIME_MS + 1), "0", "-0"]),
        json_number(),
        st.sampled_from(['"1550149860000"', "true", "null", "1550149860000.0", "1.55e12"]),
    )


PLAIN_VALUES = {
    "TransactionID": st.text("abc0123456789-_ ", min_size=1, max_size=12).map(dumps),
    "CreatedTime": st.integers(0, MAX_CREATED_TIME_MS).map(str),
    "SourceAccountID": st.text("0123456789", min_size=1, max_size=8).map(dumps),
    "TargetAccountID": st.text("0123456789", min_size=1, max_size=8).map(dumps),
    "Amount": st.one_of(
        st.integers(0, MAX_AMOUNT).map(str),
        st.integers(0, MAX_AMOUNT * 100).map(lambda c: f"{c // 100}.{c % 100:02d}"),
        st.integers(0, MAX_AMOUNT * 10).map(lambda c: f"{c // 10}.{c % 10}"),
    ),
}
FIELD_VALUES = {
    "TransactionID": identifier(),
    "CreatedTime": created_time(),
    "SourceAccountID": identifier(),
    "TargetAccountID": identifier(),
    "Amount": json_number(),
}


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """A JSON object as text: each field missing, valid or adversarial, some duplicated or
    given by its Python name, with extra fields; sometimes spaced, truncated or mangled."""
    members: list[tuple[str, str]] = []
    # Most records are near-valid: a few fields (often none) adversarial or missing.
    odd = draw(st.sets(st.sampled_from(WIRE_NAMES), max_size=len(WIRE_NAMES)))
    for name in WIRE_NAMES:
        if name not in odd:
            members.append((name, draw(PLAIN_VALUES[name])))
        elif draw(st.integers(0, 5)):
            members.append((name, draw(FIELD_VALUES[name])))  # else: missing
    if draw(st.booleans()):
        index = draw(st.integers(0, len(WIRE_NAMES) - 1))
        key = draw(st.sampled_from([WIRE_NAMES[index], PYTHON_NAMES[index], "Extra"]))
        members.insert(
            draw(st.integers(0, len(members))), (key, draw(FIELD_VALUES[WIRE_NAMES[index]]))
        )
    sep = draw(st.sampled_from([",", ", ", " ,\n"]))
    text = "{" + sep.join(f"{json.dumps(k)}:{v}" for k, v in members) + "}"
    mangle = draw(st.integers(0, 7))
    if mangle == 0 and text:
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif mangle == 1:
        text = draw(st.sampled_from([" ", "\ufeff", "[", "x"])) + text
    elif mangle == 2:
        text = text + draw(st.sampled_from([" ", "\n", "x", ",", "}"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1"]))
    try:
        return text.encode(encoding, errors="surrogatepass")
    except UnicodeEncodeError:  # latin-1 cannot hold it
        return text.encode("utf-8", errors="surrogatepass")


@st.composite
def valid_records(draw: st.DrawFn) -> bytes:
    """Plainly valid records (the fast path's own ground), built through the contract."""
    cents = draw(st.integers(0, MAX_AMOUNT * 100))
    visible = st.characters(categories=["L", "N", "P", "S"])  # printable, no separators
    ids = st.text(visible, min_size=1, max_size=ID_MAX_LENGTH)
    event = Transaction(
        TransactionID=draw(ids),
        CreatedTime=draw(st.integers(0, MAX_CREATED_TIME_MS)),
        SourceAccountID=draw(ids),
        TargetAccountID=draw(ids),
        Amount=Decimal(cents) / 100,
    )
    value = event.to_json_bytes()
    assume(len(value) <= FAST_PATH_MAX_BYTES)  # longer ones are the contract's, by design
    return value


def wire(amount: str = "1", tid: str = '"1"', extra: str = "") -> bytes:
    """A record as JSON text with this Amount and TransactionID literal, plus extra members."""
    head = f'{{"TransactionID":{tid},"CreatedTime":0,"SourceAccountID":"a","TargetAccountID":"b"'
    return f'{head},"Amount":{amount}{extra}}}'.encode()


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
@example(wire("1.230"))
@example(wire("1e2"))
@example(wire("-0.0"))
@example(wire(extra=',"amount":2'))
@example(wire(extra=',"Amount":"1"'))
@example(wire(tid='" 1"'))
@example(wire(extra=',"Extra":' + "1" * 5000))  # json refuses it even where it is ignored
@example(wire(extra=',"Extra":' + "[" * 1500 + "]" * 1500))  # deeper than json recurses
def test_fast_path_and_contract_agree_on_adversarial_records(value: bytes) -> None:
    event(assert_one_rule(value))


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.binary(max_size=200)))
def test_fast_path_and_contract_agree_on_arbitrary_bytes(value: bytes | None) -> None:
    event(assert_one_rule(value))


@settings(max_examples=1000, deadline=None)
@given(valid_records())
def test_fast_path_accepts_plainly_valid_records_with_the_contracts_values(value: bytes) -> None:
    assert fast_event_row(value) == contract_row(value)


@pytest.mark.parametrize(("value", "cents"), VALID)
def test_the_contract_tests_valid_records_agree(value: bytes, cents: int) -> None:
    assert_one_rule(value)
    row = event_row(value)
    assert isinstance(row, dict) and row["amount_cents"] == cents


@pytest.mark.parametrize(("value", "reason"), INVALID)
def test_the_contract_tests_rejections_keep_their_reason(value: bytes | None, reason: str) -> None:
    assert fast_event_row(value) is None
    assert event_row(value) == Rejection(reason)


def test_oversized_or_deeply_nested_json_is_rejected_not_raised() -> None:
    """Python's json raises ValueError / RecursionError here, not JSONDecodeError: the
    contract turns both into rejections instead of stopping the consumer."""
    huge = wire("1" + "0" * 5000)
    deep = b"[" * 100_000 + b"]" * 100_000
    for value in (huge, deep):
        assert isinstance(event_row(value), Rejection)
        assert_one_rule(value)


# --- the batch path: a poll batch at once ------------------------------------------------------
def assert_batch_rule(values: list[bytes | None]) -> str:
    """The batch path accepts a batch only if the contract accepts every value, with exactly
    its rows; and it accepts every batch the record path accepts record by record (IDs with
    a "|" next to a space aside: those it leaves to the record path, on purpose)."""
    columns = plain_event_columns(values)
    expected = [contract_row(v) for v in values]
    if columns is not None:
        assert all(len(column) == len(values) for column in columns.values())
        for i, row in enumerate(expected):
            assert not isinstance(row, Rejection), (values[i], row)
            assert {name: column[i] for name, column in columns.items()} == row
    fast = [fast_event_row(v) for v in values]
    ids = [r[k] for r in fast if r is not None for k in ("transaction_id", "source_account_id",
                                                         "target_account_id")]  # fmt: skip
    if values and None not in fast and not any(" |" in i or "| " in i for i in ids):
        assert columns is not None, values
    return "batch decided" if columns is not None else "record by record"


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(records(), valid_records(), valid_records()), max_size=6))
def test_batch_path_and_contract_agree_on_mixed_batches(values: list[bytes]) -> None:
    event(assert_batch_rule(values))


@settings(max_examples=300, deadline=None)
@given(st.lists(valid_records(), min_size=1, max_size=20))
def test_batch_path_decides_batches_of_plainly_valid_records(values: list[bytes]) -> None:
    assert assert_batch_rule(values) == "batch decided"


@pytest.mark.parametrize(
    "values",
    [
        [None, wire()],
        [wire() + wire(), b""],  # two objects in one value, none in the next: both invalid
        [wire()[:20], wire()[20:]],  # one object cut across two values
        [wire(), wire() + b"\n" + wire()],
        [wire(), b" "],
        [wire(tid='"a |b"'), wire()],  # plain, but left to the record path
        [wire(tid='" a"')],
        [wire("10000000.01")],
        [wire("99999999999")],
        [wire("1.5e1")],
        [wire(extra=',"amount":2')],
        [wire(), wire("[\n1\n]"), wire('{"a":\n1}')],  # an Amount that spans lines
        [wire(), wire(extra=',"Extra":' + "1" * 5000)],
        [wire(), wire(extra=',"Extra":' + "[" * 1500 + "]" * 1500)],
    ],
)
def test_batch_path_never_lets_one_value_pass_for_another(values: list[bytes | None]) -> None:
    assert plain_event_columns(values) is None
    assert_batch_rule(values)


def test_a_long_value_is_decided_by_the_contract_with_the_same_answer() -> None:
    """Valid, but longer than the fast paths read: the contract's row, by either path."""
    value = wire(tid=dumps("\U0001f600" * ID_MAX_LENGTH))  # 12 bytes each, escaped
    assert len(value) > FAST_PATH_MAX_BYTES
    assert fast_event_row(value) is None and plain_event_columns([value]) is None
    row = event_row(value)
    assert isinstance(row, dict) and row == contract_row(value)
    assert row["transaction_id"] == "\U0001f600" * ID_MAX_LENGTH
